"""The release history (issue 15): releases to sweep, the table, change points, Markdown/HTML, resumable sweeps.

No environment is built here: sweep folders are written by hand, and the sweep's runs go to a fake interpreter.
"""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest

from harness.history import envs as history_envs

from harness.history import html as history_html

from harness.history import markdown as history_markdown

from harness.history import releases as history_releases

from harness.history import sweep as history_sweep
from harness.errors import HarnessError
from harness.history.compare import compare
from harness.history.table import NOT_APPLICABLE, load, root_cause
from harness.history.write import write

AVAILABLE = ["4.57.6", "5.0.0", "5.1.0", "5.2.0", "5.3.0", "5.3.1rc1", "5.10.1", "5.10.4", "5.9.0"]
GMM_F16 = "transformers-grouped_mm-default-float16-fullgraph-cpu-decode"
GMM_BF16 = "transformers-grouped_mm-default-bfloat16-fullgraph-cpu-decode"
NEMO = "transformers-batched_mm-default-bfloat16-fullgraph-cpu-decode-non_gated"
SONIC = "transformers-sonicmoe-default-bfloat16-fullgraph-cpu-decode"


def test_release_selection():
    available = lambda: sorted((v for v in AVAILABLE if history_releases.is_release(v)),  # noqa: E731
                               key=history_releases.key)
    assert history_releases.select([], available) == ["5.0.0", "5.1.0", "5.2.0", "5.3.0", "5.9.0", "5.10.1",
                                                      "5.10.4"]
    assert history_releases.select(["5.2.0..5.9.0"], available) == ["5.2.0", "5.3.0", "5.9.0"]
    assert history_releases.select(["5.9.0.."], available) == ["5.9.0", "5.10.1", "5.10.4"]
    assert history_releases.select(["5.3.0,5.2.0", "5.3.0"], lambda: pytest.fail("no index for a list")) == \
        ["5.2.0", "5.3.0"]
    assert history_releases.latest_patches(["5.10.1", "5.10.4", "5.9.0"]) == ["5.9.0", "5.10.4"]
    with pytest.raises(HarnessError, match="not a release number"):
        history_releases.select(["5.x"], available)
    with pytest.raises(HarnessError, match="matches no release"):
        history_releases.select(["6.0.0.."], available)


def _cell(cell_id: str, status: str, message: str = "", etype: str = "", where: str = "") -> dict:
    parts = cell_id.split("-")
    record = {"id": cell_id, "source": "transformers", "backend": parts[1], "mode": parts[2], "dtype": parts[3],
              "fullgraph": parts[4] == "fullgraph", "device": "cpu", "shape": "decode",
              "layout": parts[7] if len(parts) > 7 else "default", "scope": "kernel", "phase": "inference",
              "status": status, "verdict": "not_applicable" if status == "skipped" else "ok"}
    if message:
        record["error"] = {"type": etype or "RuntimeError", "message": message, **({"where": where} if where else {})}
    return record


def _write_pair(out: str, release: str, cells: list[dict], torch: str = "2.13.0", complete: bool = True) -> None:
    folder = history_sweep.pair_dir(out, torch, release)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.json"), "w", encoding="utf-8") as fh:
        json.dump({"schema": 1, "complete": complete, "environment": {"torch": torch, "transformers": release},
                   "cells": cells}, fh)


@pytest.fixture
def sweep_dir(tmp_path):
    out = str(tmp_path / "sweep")
    fail = "RuntimeError: Expected inputs of BF16 type but got mat_a.dtype=torch.float16"
    _write_pair(out, "5.2.0", [_cell(GMM_F16, "compile_error", fail, where="transformers/integrations/moe.py:190"),
                               _cell(GMM_BF16, "pass"),
                               _cell(NEMO, "skipped", "transformers 5.2.0 has no NemotronH experts", "NotInRelease")])
    _write_pair(out, "5.3.0", [_cell(GMM_F16, "pass"), _cell(GMM_BF16, "pass"), _cell(NEMO, "pass")])
    _write_pair(out, "5.10.1", [_cell(GMM_F16, "pass"), _cell(GMM_BF16, "mismatch", "max relative error 0.5 > 0.03",
                                                              "Mismatch"),
                                _cell(NEMO, "pass"), _cell(SONIC, "runtime_error", "needs CUDA")])
    pairs = {f"2.13.0/{r}": {"torch": "2.13.0", "transformers": r, "state": "complete",
                             "registered": ["eager", "batched_mm", "grouped_mm"] + (["sonicmoe"] if r == "5.10.1"
                                                                                    else [])}
             for r in ("5.2.0", "5.3.0", "5.10.1")}
    with open(os.path.join(out, "sweep.json"), "w", encoding="utf-8") as fh:
        json.dump({"schema": 1, "pairs": pairs, "slice": {"run_args": ["--device", "cpu"], "cells": []}}, fh)
    return out


def test_table_change_points_and_root_causes(sweep_dir):
    (history,) = load(sweep_dir)
    assert history.releases == ["5.2.0", "5.3.0", "5.10.1"]  # version order, not text order
    assert history.entries[SONIC]["5.3.0"].status == NOT_APPLICABLE
    assert history.entries[SONIC]["5.3.0"].cause == "transformers 5.3.0 registers no sonicmoe experts implementation"
    assert history.entries[NEMO]["5.2.0"].status == NOT_APPLICABLE
    found = {(c.release, c.cell): (c.before.status, c.after.status, root_cause(c)) for c in history.changes}
    assert found[("5.3.0", GMM_F16)] == ("compile_error", "pass", "RuntimeError: Expected inputs of BF16 type but got "
                                         "mat_a.dtype=torch.float16 (transformers/integrations/moe.py:190)")
    assert found[("5.10.1", GMM_BF16)] == ("pass", "mismatch", "max relative error 0.5 > 0.03")
    assert found[("5.3.0", NEMO)][:2] == (NOT_APPLICABLE, "pass")
    assert found[("5.10.1", SONIC)][:2] == (NOT_APPLICABLE, "runtime_error")
    assert len(history.changes) == 4


def test_a_new_failure_reason_is_a_change_but_new_numbers_or_frames_are_not(tmp_path):
    out = str(tmp_path)
    _write_pair(out, "5.0.0", [_cell(GMM_BF16, "mismatch", "call 0: max relative error 0.031 > tolerance 0.03",
                                     where="moe.py:192 in _grouped_linear")])
    _write_pair(out, "5.1.0", [_cell(GMM_BF16, "mismatch", "call 1: max relative error 0.029 > tolerance 0.03",
                                     where="moe.py:182 in _grouped_mm")])  # moved code: not a change
    _write_pair(out, "5.2.0", [_cell(GMM_BF16, "mismatch", "output has NaN or Inf")])
    (history,) = load(out)
    assert [(c.release, c.before.message, c.after.message) for c in history.changes] == [
        ("5.2.0", "call 1: max relative error 0.029 > tolerance 0.03", "output has NaN or Inf")]


def test_markdown_and_html(sweep_dir):
    paths = write(sweep_dir)
    text = open(paths[0], encoding="utf-8").read()
    assert "- transformers 5.3.0: grouped_mm, float16, Qwen2-MoE: compile_error -> pass — RuntimeError: Expected inputs of " \
           "BF16 type" in text
    assert "| 5.2.0 | 5.3.0 | 5.10.1 |" in text
    assert f"- `{GMM_BF16}`: 5.2.0–5.3.0 pass; 5.10.1 mismatch (max relative error 0.5 > 0.03)" in text
    page = open(paths[1], encoding="utf-8").read()
    assert page.count('<tr class="group">') == 3  # batched_mm, grouped_mm, sonicmoe
    assert "s chg" in page and "compile_error — RuntimeError: Expected inputs" in page
    assert history_html.COLOURS["pass"] in page
    data = json.load(open(paths[2], encoding="utf-8"))
    assert data["environments"][0]["grouped_changes"][0]["release"] == "5.3.0"
    assert history_markdown.SYMBOLS["compile_error"] == "C"


def test_compare_names_every_difference(sweep_dir, tmp_path):
    other = str(tmp_path / "other")
    _write_pair(other, "5.3.0", [_cell(GMM_F16, "compile_error", "x"), _cell(GMM_BF16, "pass"), _cell(NEMO, "pass")])
    assert compare(sweep_dir, other, ["5.3.0"]) == [
        f"torch-2.13.0/transformers-5.3.0: {GMM_F16}: pass here, compile_error in {other}"]
    assert compare(sweep_dir, other, ["5.2.0"]) == [f"no (torch, release) pair in both {sweep_dir} and {other}"]


FAKE_PYTHON = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as fh:
    fh.write(json.dumps(args) + "\\n")
if args[0] == "-c":  # registered_in's probe: where transformers lives
    print(os.environ["FAKE_TF"]); sys.exit(0)
out = args[args.index("--out") + 1]
os.makedirs(out, exist_ok=True)
code = int(os.environ.get("FAKE_EXIT", "0"))
json.dump({{"complete": code != 130, "cells": [{{"id": "x", "status": "pass"}}]}},
          open(os.path.join(out, "results.json"), "w"))
sys.exit(code)
"""


def test_sweep_is_resumable_and_stops_when_interrupted(tmp_path, monkeypatch):
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    tf = tmp_path / "tf" / "transformers"
    (tf / "integrations").mkdir(parents=True)
    (tf / "integrations" / "moe.py").write_text(
        'class ExpertsInterface:\n    _global_mapping = {"batched_mm": None, "grouped_mm": None}\n')
    log = tmp_path / "calls.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_TF", str(tf))
    built = []

    def ensure(root, torch, release, kind="shared-torch", log=None, wheels=None):
        built.append(release)
        return history_envs.Env("env", str(fake), torch, release, kind, 1.0, "transformers==" + release)

    monkeypatch.setattr(history_envs, "ensure", ensure)
    out = str(tmp_path / "out")
    config = history_sweep.SweepConfig(["5.2.0", "5.3.0"], ["2.13.0"], out, str(tmp_path / "envs"),
                                       str(tmp_path / "cache"), ["-k", "x"],
                                       cells=[GMM_BF16, SONIC])
    monkeypatch.setenv("FAKE_EXIT", "130")
    assert history_sweep.sweep(config, log=lambda m: None) == 130  # stops at the first pair
    assert sorted(built) == ["5.2.0", "5.3.0"]  # the next pair's environment was being built during the run
    monkeypatch.setenv("FAKE_EXIT", "0")
    assert history_sweep.sweep(config, log=lambda m: None) == 0
    runs = [json.loads(line) for line in log.read_text().splitlines() if json.loads(line)[0] == "-m"]
    assert "--resume" in runs[1] and "--resume" not in runs[2]  # the interrupted pair continues
    assert runs[1].count("--cell") == 1 and SONIC not in runs[1]  # not registered there: not asked for
    record = history_sweep.read_sweep(out)["pairs"]
    assert record["2.13.0/5.3.0"]["registered"] == ["eager", "batched_mm", "grouped_mm"]
    assert history_sweep.sweep(config, log=lambda m: None) == 0  # everything complete: nothing runs
    assert len([line for line in log.read_text().splitlines() if json.loads(line)[0] == "-m"]) == 3
    assert os.environ.get("TORCHINDUCTOR_CACHE_DIR") != str(tmp_path / "cache")  # only the runs get it


def test_environment_marker_caches_and_a_half_built_one_is_rebuilt(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(history_envs, "_fresh_venv", lambda folder, log, with_pip=True: (
        calls.append(("venv", os.path.basename(folder))), os.makedirs(folder, exist_ok=True)))
    monkeypatch.setattr(history_envs, "_pip", lambda folder, reqs, log: calls.append(("pip", tuple(reqs))))
    monkeypatch.setattr(history_envs, "_check", lambda folder, torch, tf, log: ("frozen", ()))
    monkeypatch.setattr(history_envs, "_site_packages", lambda folder: os.path.join(folder, "sp"))
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "torch-2.13.0", "transformers-5.3.0", "sp"))
    os.makedirs(os.path.join(root, "torch-2.13.0", "base", "sp"))
    env = history_envs.ensure(root, "2.13.0", "5.3.0")
    assert env.freeze == "frozen" and env.build_s > 0
    assert ("pip", ("transformers==5.3.0",)) in calls and ("venv", "base") in calls
    pth = os.path.join(root, "torch-2.13.0", "transformers-5.3.0", "sp", "zz_history_base.pth")
    assert open(pth).read().strip() == os.path.join(root, "torch-2.13.0", "base", "sp")
    calls.clear()
    assert history_envs.ensure(root, "2.13.0", "5.3.0").build_s == 0.0 and calls == []
    with pytest.raises(HarnessError, match="unknown kind"):
        history_envs.ensure(root, "2.13.0", "5.3.0", kind="conda")
