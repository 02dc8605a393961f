"""The harness run end to end on fixture backends that produce every status and verdict (subprocesses)."""

from __future__ import annotations

import shlex
import xml.etree.ElementTree as ET

import pytest

from harness.portable import local_path
from tests.conftest import fixture_backend, load_cells, matrix_doc, run_harness, write_matrix

pytestmark = pytest.mark.slow

STATUS_BACKENDS = ["healthy", "graph_break", "compile_only_failure", "runtime_failure", "wrong_numerics",
                   "recompile_storm"]
RULES = [
    {"match": {"backend": "graph_break", "fullgraph": True}, "expect": "fail", "status": ["compile_error"],
     "error_match": "graph_break", "reason": "explicit graph break"},
    {"match": {"backend": "compile_only_failure", "mode": "default"}, "expect": "fail",
     "reason": "cannot be traced"},
    {"match": {"backend": "healthy", "mode": "default", "fullgraph": True}, "expect": "fail",
     "reason": "stale documentation claims this fails"},
]


@pytest.fixture(scope="module")
def status_run(tmp_path_factory):
    """One run over every status-producing fixture backend, cpu and cuda cells, two workers."""
    folder = tmp_path_factory.mktemp("status_run")
    doc = matrix_doc({name: fixture_backend(name) for name in STATUS_BACKENDS}, expectations=RULES,
                     axes={"device": ["cpu", "cuda"]})
    matrix = write_matrix(folder / "matrix.yaml", doc)
    proc = run_harness("run", "--matrix", str(matrix), "--out", str(folder / "out"), "-n", "2")
    return proc, load_cells(folder / "out"), folder


def _cell(cells, backend, mode="default", fullgraph=False, device="cpu"):
    if mode == "uncompiled":
        return cells[f"user-{backend}-uncompiled-float32-{device}-prefill"]
    return cells[f"user-{backend}-{mode}-float32-{'fullgraph' if fullgraph else 'breaks-allowed'}-{device}-prefill"]


def test_regressions_give_exit_1_and_are_listed(status_run):
    proc, cells, _ = status_run
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "REGRESSION user-wrong_numerics-uncompiled-float32-cpu-prefill" in proc.stdout
    assert "UNEXPECTED PASS user-healthy-default-float32-fullgraph-cpu-prefill" in proc.stdout
    assert "status:  pass" in proc.stdout and "verdict: ok" in proc.stdout


def test_healthy_backend_passes_on_cpu_and_cuda_is_not_applicable(status_run):
    _, cells, _ = status_run
    for mode, fullgraph in (("uncompiled", None), ("default", False)):
        cell = _cell(cells, "healthy", mode, fullgraph)
        assert (cell["status"], cell["verdict"]) == ("pass", "ok")
        assert cell["signals"]["max_rel_error"] < 1e-5
    cuda = _cell(cells, "healthy", "uncompiled", device="cuda")
    assert (cuda["status"], cuda["verdict"]) == ("skipped", "not_applicable")
    assert "no CUDA device" in cuda["error"]["message"]


def test_graph_break_is_a_compile_error_only_under_fullgraph(status_run):
    _, cells, _ = status_run
    fullgraph = _cell(cells, "graph_break", fullgraph=True)
    assert (fullgraph["status"], fullgraph["verdict"]) == ("compile_error", "ok")
    assert fullgraph["error"]["type"].startswith("torch._dynamo.exc.")
    partial = _cell(cells, "graph_break", fullgraph=False)
    assert partial["status"] == "pass" and partial["signals"]["graph_breaks"] >= 1
    assert partial["signals"]["graph_break_reasons"]


def test_compile_only_failure(status_run):
    _, cells, _ = status_run
    assert _cell(cells, "compile_only_failure", "uncompiled")["status"] == "pass"
    for fullgraph in (True, False):
        cell = _cell(cells, "compile_only_failure", fullgraph=fullgraph)
        assert (cell["status"], cell["verdict"]) == ("compile_error", "ok")
        assert "cannot be traced" in cell["error"]["detail"]


def test_runtime_failure(status_run):
    _, cells, _ = status_run
    for mode, fullgraph in (("uncompiled", None), ("default", True), ("default", False)):
        cell = _cell(cells, "runtime_failure", mode, fullgraph)
        assert (cell["status"], cell["verdict"]) == ("runtime_error", "regression"), cell["error"]
        assert "kernel failed at run time" in cell["error"]["message"]


def test_wrong_numerics_is_a_mismatch_with_the_measured_error(status_run):
    _, cells, _ = status_run
    for mode, fullgraph in (("uncompiled", None), ("default", True)):
        cell = _cell(cells, "wrong_numerics", mode, fullgraph)
        assert (cell["status"], cell["verdict"]) == ("mismatch", "regression")
        assert 0.005 < cell["signals"]["max_rel_error"] < 0.02
        assert "tolerance" in cell["error"]["message"]


def test_recompile_storm_is_flagged(status_run):
    _, cells, _ = status_run
    cell = _cell(cells, "recompile_storm", fullgraph=False)
    assert cell["signals"]["recompiles"] > 1
    assert any(d.startswith("recompile_storm") for d in cell["signals"]["degraded"])
    assert _cell(cells, "healthy")["signals"]["degraded"] == []


def test_every_cell_has_a_repro_and_results_are_complete(status_run):
    proc, cells, folder = status_run
    doc_cells = list(cells.values())
    assert len(doc_cells) == len(STATUS_BACKENDS) * 3 * 2
    for cell in doc_cells:
        assert cell["repro"].startswith("python -m harness run --matrix ") and cell["id"] in cell["repro"]
    import json
    doc = json.loads((folder / "out" / "results.json").read_text())
    assert doc["complete"] is True and doc["interrupted"] is False
    assert doc["environment"]["torch"]


def test_junit_xml_has_one_testcase_per_cell(status_run):
    _, cells, folder = status_run
    tree = ET.parse(folder / "out" / "junit.xml")
    names = {case.get("name") for case in tree.iter("testcase")}
    assert names == set(cells)


def test_repro_command_reruns_exactly_one_cell(status_run, tmp_path):
    _, cells, _ = status_run
    cell = _cell(cells, "wrong_numerics", "uncompiled")
    # after "python -m harness"; the matrix is in a temporary folder, written `<tmp>/...` in results.json
    args = [local_path(arg) for arg in shlex.split(cell["repro"])[3:]]
    proc = run_harness(*args, "--out", str(tmp_path / "out"))
    assert proc.returncode == 1
    rerun = load_cells(tmp_path / "out")
    assert list(rerun) == [cell["id"]] and rerun[cell["id"]]["status"] == "mismatch"


def test_strict_turns_unexpected_passes_into_failures(tmp_path):
    doc = matrix_doc({"healthy": fixture_backend("healthy")}, axes={"mode": ["uncompiled"]},
                     expectations=[{"match": {"backend": "healthy"}, "expect": "fail", "reason": "stale"}])
    matrix = write_matrix(tmp_path / "matrix.yaml", doc)
    relaxed = run_harness("run", "--matrix", str(matrix), "--out", str(tmp_path / "a"))
    strict = run_harness("run", "--matrix", str(matrix), "--out", str(tmp_path / "b"), "--strict")
    assert relaxed.returncode == 0 and strict.returncode == 1
    assert load_cells(tmp_path / "a")["user-healthy-uncompiled-float32-cpu-prefill"]["verdict"] == "unexpected_pass"


def test_crash_and_timeout_cost_one_cell_each(tmp_path):
    """Abort, segfault and hang in one worker: each is reported, and the healthy cells after them pass."""
    backends = {name: fixture_backend(name) for name in ("abort", "segfault", "hang", "healthy")}
    doc = matrix_doc(backends, axes={"mode": ["uncompiled"], "shape": ["decode", "prefill"]}, time_limit_s=8)
    matrix = write_matrix(tmp_path / "matrix.yaml", doc)
    proc = run_harness("run", "--matrix", str(matrix), "--out", str(tmp_path / "out"), "-n", "0")
    cells = load_cells(tmp_path / "out")
    assert proc.returncode == 1
    for shape in ("decode", "prefill"):
        abort = cells[f"user-abort-uncompiled-float32-cpu-{shape}"]
        segv = cells[f"user-segfault-uncompiled-float32-cpu-{shape}"]
        hang = cells[f"user-hang-uncompiled-float32-cpu-{shape}"]
        assert abort["status"] == "crash" and "SIGABRT" in abort["error"]["message"]
        assert segv["status"] == "crash" and "SIGSEGV" in segv["error"]["message"]
        assert hang["status"] == "timeout" and "time limit 8s" in hang["error"]["message"]
        assert cells[f"user-healthy-uncompiled-float32-cpu-{shape}"]["status"] == "pass"
