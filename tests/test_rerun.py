"""Rerunning part of a run: --last-failed merges into results.json, --resume keeps JUnit complete, cuda cells
without a GPU are recorded as not run (one line, no `s` per cell), and pytest loads only the harness's plugins."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.environment import machine as environment
from tests.conftest import fixture_backend, load_cells, matrix_doc, run_harness, write_matrix

pytestmark = pytest.mark.slow

OK = "user-healthy-uncompiled-float32-cpu-prefill"
BROKEN = "user-runtime_failure-uncompiled-float32-cpu-prefill"


def _matrix(folder: Path, devices=("cpu",)) -> Path:
    doc = matrix_doc({"healthy": fixture_backend("healthy"), "runtime_failure": fixture_backend("runtime_failure")},
                     axes={"mode": ["uncompiled"], "device": list(devices)})
    return write_matrix(folder / "matrix.yaml", doc)


def _junit(out: Path) -> dict[str, ET.Element]:
    return {case.get("name"): case for case in ET.parse(out / "junit.xml").iter("testcase")}


def _edit_results(out: Path, change) -> dict:
    doc = json.loads((out / "results.json").read_text())
    change(doc)
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    return doc


def test_last_failed_reruns_only_the_failed_cells_and_merges(tmp_path):
    matrix, out = _matrix(tmp_path), tmp_path / "out"
    first = run_harness("run", "--matrix", str(matrix), "--out", str(out), "-n", "0")
    assert first.returncode == 1 and load_cells(out)[BROKEN]["verdict"] == "regression"

    def mark(doc):  # a trace on the passing cell: it must survive the rerun untouched
        next(c for c in doc["cells"] if c["id"] == OK)["verdict_reason"] = "kept from the first run"

    _edit_results(out, mark)
    rerun = run_harness("run", "--matrix", str(matrix), "--out", str(out), "-n", "0", "--last-failed", "-v")
    assert rerun.returncode == 1, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "last-failed: rerunning 1 failed cell(s)" in rerun.stdout and "1 failed in" in rerun.stdout
    assert BROKEN in rerun.stdout and f"{OK} PASSED" not in rerun.stdout
    cells = load_cells(out)
    assert set(cells) == {OK, BROKEN}  # merged, not replaced
    assert cells[OK]["verdict_reason"] == "kept from the first run"
    assert cells[BROKEN]["status"] == "runtime_error"
    doc = json.loads((out / "results.json").read_text())
    assert doc["complete"] is True and doc["summary"]["total"] == 2
    junit = _junit(out)
    assert set(junit) == {OK, BROKEN} and junit[BROKEN].find("failure") is not None
    recorded = {p.get("name"): p.get("value") for p in junit[OK].iter("property")}
    assert recorded["recorded"].startswith("kept from an earlier run")

    # --lf is the same option; with nothing failed there is nothing to run, and nothing is touched.
    def fix(doc):
        cell = next(c for c in doc["cells"] if c["id"] == BROKEN)
        cell.update(status="pass", verdict="ok", error=None)

    fixed = _edit_results(out, fix)
    before = (out / "results.json").read_bytes(), (out / "junit.xml").read_bytes()
    again = run_harness("run", "--matrix", str(matrix), "--out", str(out), "--lf")
    assert again.returncode == 0 and "last-failed: no failed cell to rerun" in again.stdout, again.stderr
    assert ((out / "results.json").read_bytes(), (out / "junit.xml").read_bytes()) == before
    assert fixed["cells"]


def test_resume_writes_junit_for_every_cell_of_results(tmp_path):
    matrix, out = _matrix(tmp_path), tmp_path / "out"
    assert run_harness("run", "--matrix", str(matrix), "--out", str(out), "-n", "0").returncode == 1

    def interrupt(doc):  # as if interrupted after the first cell
        doc["cells"] = [c for c in doc["cells"] if c["id"] == BROKEN]
        doc.update(complete=False, interrupted=True)

    _edit_results(out, interrupt)
    resumed = run_harness("run", "--matrix", str(matrix), "--out", str(out), "-n", "0", "--resume")
    assert resumed.returncode == 1, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming: 1 of 2 cells already finished" in resumed.stdout and "1 passed in" in resumed.stdout
    doc = json.loads((out / "results.json").read_text())
    assert doc["complete"] is True and {c["id"] for c in doc["cells"]} == {OK, BROKEN}
    junit = _junit(out)
    assert set(junit) == {OK, BROKEN}  # the resumed cell too, as a failure (it was a regression)
    assert junit[BROKEN].find("failure") is not None and junit[OK].find("failure") is None
    suite = next(ET.parse(out / "junit.xml").iter("testsuite"))
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    nothing = run_harness("run", "--matrix", str(matrix), "--out", str(out), "--resume")
    assert nothing.returncode == 0 and "nothing to resume" in nothing.stdout


@pytest.mark.skipif(environment.cuda_available(), reason="needs a machine without a GPU")
def test_cuda_cells_without_a_gpu_are_one_line_and_recorded_as_not_run(tmp_path):
    matrix, out = _matrix(tmp_path, devices=("cpu", "cuda")), tmp_path / "out"
    proc = run_harness("run", "--matrix", str(matrix), "--out", str(out), "-n", "2")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("2 cuda cells deselected: no GPU") == 1
    assert "2 workers [2 items]" in proc.stdout and "skipped" not in proc.stdout.split("short test summary")[-1]
    cells = load_cells(out)
    cuda = [cell for cell in cells.values() if cell["device"] == "cuda"]
    assert len(cuda) == 2 and all((c["status"], c["verdict"]) == ("skipped", "not_applicable") for c in cuda)
    assert all(c["error"]["message"] == "no CUDA device on this machine" for c in cuda)
    doc = json.loads((out / "results.json").read_text())
    assert doc["summary"]["status"]["pass"] == 1 and doc["summary"]["status"]["skipped"] == 2  # never as passing
    junit = _junit(out)
    assert set(junit) == set(cells)
    for cell in cuda:
        skipped = junit[cell["id"]].find("skipped")
        assert skipped is not None and skipped.get("message").startswith("not applicable")


def _fake_plugin(folder: Path) -> Path:
    """An installed pytest plugin (an entry point in the pytest11 group) that leaves a file per process it loads in."""
    (folder / "fakeplug-1.0.dist-info").mkdir(parents=True)
    (folder / "fakeplug-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 1.0\n")
    (folder / "fakeplug-1.0.dist-info" / "entry_points.txt").write_text("[pytest11]\nfakeplug = fakeplug_mod\n")
    (folder / "fakeplug_mod.py").write_text(
        "import os\n"
        "def pytest_configure(config):\n"
        "    who = getattr(config, 'workerinput', {}).get('workerid', 'controller')\n"
        "    open(os.path.join(os.environ['FAKEPLUG_MARKERS'], who), 'w').close()\n")
    return folder


def test_only_the_harness_plugins_load_in_controller_and_workers(tmp_path):
    plugin_dir, markers = _fake_plugin(tmp_path / "site"), tmp_path / "markers"
    markers.mkdir()
    doc = matrix_doc({"healthy": fixture_backend("healthy")}, axes={"mode": ["uncompiled"], "shape": ["decode", "prefill"]})
    matrix = write_matrix(tmp_path / "matrix.yaml", doc)
    env = {"PYTHONPATH": os.pathsep.join([str(plugin_dir), os.environ.get("PYTHONPATH", "")]),
           "FAKEPLUG_MARKERS": str(markers), "PYTEST_ADDOPTS": "-p fakeplug_mod", "PYTEST_PLUGINS": "fakeplug_mod"}
    import subprocess
    import sys

    plain = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                            str(plugin_dir)], env={**os.environ, **env, "PYTEST_ADDOPTS": "", "PYTEST_PLUGINS": ""},
                           capture_output=True, text=True, cwd=tmp_path, check=False)
    assert (markers / "controller").exists(), plain.stdout + plain.stderr  # pytest alone does load it
    (markers / "controller").unlink()
    proc = run_harness("run", "--matrix", str(matrix), "--out", str(tmp_path / "a"), "-n", "2", env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(os.listdir(markers)) == []  # not autoloaded, and PYTEST_ADDOPTS / PYTEST_PLUGINS are ignored
    assert "fakeplug" not in proc.stdout
    proc = run_harness("run", "--matrix", str(matrix), "--out", str(tmp_path / "b"), "-n", "2", "--", "-p", "fakeplug",
                       env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(os.listdir(markers)) == ["controller", "gw0", "gw1"]  # asked for: loaded everywhere
