"""Release-aware cells (issue 15): a family or backend the release under test lacks is not applicable, not a failure.

The release is a fake transformers tree (tests/test_history_bisect.py) with Qwen2-MoE experts and only batched_mm;
the check runs in a subprocess that imports it instead of the installed transformers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.test_history_bisect import write_fake

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = """
import json, sys
from harness.sources.release import not_in_release
failed = {"status": "runtime_error", "error": {"type": "AttributeError", "message": "boom"}}
out = {}
for name, cell in json.loads(sys.argv[1]).items():
    out[name] = not_in_release({"cell": cell}, dict(failed))
out["passing"] = not_in_release({"cell": {"source": "transformers", "backend": "grouped_mm", "layout": "default"}},
                                {"status": "pass"})
print(json.dumps(out))
"""


def test_missing_family_and_backend_become_not_in_release(tmp_path):
    src = str(tmp_path / "src")
    write_fake(src, version="5.2.0")
    cells = {"nemotron": {"source": "transformers", "backend": "batched_mm", "layout": "non_gated"},
             "unregistered": {"source": "transformers", "backend": "grouped_mm", "layout": "default"},
             "present": {"source": "transformers", "backend": "batched_mm", "layout": "default"},
             "reference": {"source": "reference", "backend": "grouped_mm", "layout": "non_gated"}}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, ROOT]), "HARNESS_TRANSFORMERS_SRC": src}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(cells)], capture_output=True, text=True, env=env,
                          cwd=ROOT, check=True)
    out = json.loads(proc.stdout)
    assert out["nemotron"]["status"] == "skipped"
    assert out["nemotron"]["error"]["type"] == "NotInRelease"
    assert out["nemotron"]["error"]["message"] == \
        "transformers 5.2.0 has no NemotronH experts (no transformers.models.nemotron_h)"
    assert out["nemotron"]["error"]["original_message"] == "boom"
    assert out["unregistered"]["error"]["message"] == \
        "transformers 5.2.0 registers no grouped_mm experts implementation (registered: eager, batched_mm)"
    assert out["present"]["status"] == "runtime_error"  # the release has everything: a real failure stays one
    assert out["reference"]["status"] == "runtime_error"  # only transformers cells depend on the release
    assert out["passing"]["status"] == "pass"
