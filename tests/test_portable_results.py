"""results.json holds no absolute path of the machine that produced it, and failing cells name their root cause."""

from __future__ import annotations

import json
import os
import site
import sys
import sysconfig
import tempfile

import pytest

from tests.conftest import REPO_ROOT, fixture_backend, matrix_doc, run_harness, write_matrix

pytestmark = pytest.mark.slow

FIXTURES = "tests/fixtures/backends.py"


def _line_of(text: str) -> int:
    with open(REPO_ROOT / FIXTURES, encoding="utf-8") as fh:
        return next(number for number, line in enumerate(fh, start=1) if text in line)


def _machine_paths() -> set[str]:
    """Absolute folders of this machine that must not appear in a results file."""
    folders = {str(REPO_ROOT), sys.prefix, sys.base_prefix, sysconfig.get_paths()["purelib"], "/tmp",
               tempfile.gettempdir(), os.path.expanduser("~")}
    folders.update(getattr(site, "getsitepackages", lambda: [])())
    return {folder for folder in folders if folder and folder != "/"} | {os.path.realpath(f) for f in folders if f}


def test_results_of_a_failing_cell_hold_no_absolute_path(tmp_path):
    doc = matrix_doc({"compile_only_failure": fixture_backend("compile_only_failure")},
                     axes={"mode": ["default"], "fullgraph": [True]})
    matrix = write_matrix(tmp_path / "matrix.yaml", doc)
    out = tmp_path / "out"
    proc = run_harness("run", "--matrix", str(matrix), "--out", str(out), "-n", "0")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("results.json", "junit.xml"):
        shared = (out / name).read_text()
        leaked = sorted(folder for folder in _machine_paths() if folder in shared)
        assert not leaked, (name, [line for line in shared.splitlines() if any(f in line for f in leaked)][:10])
    text = (out / "results.json").read_text()

    results = json.loads(text)
    (cell,) = results["cells"]
    error = cell["error"]
    # The fake implementation's ValueError, not Dynamo's wrapper, and the fixture's line that raised it.
    assert error["type"].startswith("torch._dynamo.exc.")
    assert error["message"] == "ValueError: fixture: this op cannot be traced (fake implementation raises)"
    assert error["where"] == f"{FIXTURES}:{_line_of('cannot be traced (fake')} in _"
    assert error["wrapper"] and error["detail"].startswith(error["message"])
    assert cell["repro"].startswith("python -m harness run --matrix '<tmp>/") and cell["id"] in cell["repro"]
    assert results["matrix"].startswith("<tmp>/") and results["matrix"].endswith("/matrix.yaml")
    assert "<tmp>/" in results["argv"]
    # The short message shown in the terminal summary is `message (where)`.
    assert f"{error['message']} ({error['where']})" in proc.stdout
