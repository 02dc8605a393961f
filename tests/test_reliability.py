"""Faults do not leak, interruptions lose nothing, runs repeat, bad results files get one clear error."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from harness.errors import HarnessError
from harness.portable import local_path, portable_path
from harness.results.results_json import read_results
from tests.conftest import REPO_ROOT, fixture_backend, load_cells, matrix_doc, run_harness, write_matrix

CLEAN = ["state_sensitive", "healthy"]
FAULTY = ["leak_global_state", "leak_thread", "leak_process", "abort", "state_sensitive", "healthy"]
AXES = {"mode": ["uncompiled", "default"], "shape": ["decode", "prefill"]}
COMPARED = ("status", "verdict", "max_rel_error", "error_type", "graph_breaks")


def _run(tmp_path_factory, backends, workers):
    folder = tmp_path_factory.mktemp("run")
    matrix = write_matrix(folder / "matrix.yaml", matrix_doc({b: fixture_backend(b) for b in backends}, axes=AXES))
    proc = run_harness("run", "--matrix", str(matrix), "--out", str(folder / "out"), "-n", str(workers))
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    return load_cells(folder / "out")


def _observed(cells, backends):
    return {cid: (c["status"], c["verdict"], c["signals"].get("max_rel_error"), (c["error"] or {}).get("type"),
                  c["signals"].get("graph_breaks"))
            for cid, c in cells.items() if c["backend"] in backends}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same healthy cells run alone and beside faulty neighbours, in one worker and in two."""
    return {(kind, n): _run(tmp_path_factory, CLEAN if kind == "clean" else FAULTY, n)
            for kind in ("clean", "faulty") for n in (0, 2)}


@pytest.mark.slow
def test_clean_cells_behave_as_designed(runs):
    cells = runs[("clean", 0)]
    assert {cell["status"] for cell in cells.values()} == {"pass"}  # so any leak would show as a mismatch


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2], ids=["n0", "n2"])
def test_faulty_neighbours_change_no_other_result(runs, workers):
    assert _observed(runs[("faulty", workers)], CLEAN) == _observed(runs[("clean", workers)], CLEAN)


@pytest.mark.slow
def test_two_runs_give_identical_results(runs):
    assert _observed(runs[("clean", 0)], CLEAN) == _observed(runs[("clean", 2)], CLEAN)
    assert _observed(runs[("faulty", 0)], CLEAN) == _observed(runs[("faulty", 2)], CLEAN)


@pytest.mark.slow
def test_leaks_are_recorded_on_the_cell_that_leaked(runs):
    cells = runs[("faulty", 0)]
    leaked = cells["user-leak_global_state-uncompiled-float32-cpu-prefill"]["signals"]["leaked_state"]
    # (grad mode is not listed: inference cells run inside torch.no_grad(), which restores it on exit)
    for needle in ("default dtype", "deterministic", "torch._dynamo.config", "torch._inductor.config"):
        assert any(needle in item for item in leaked), (needle, leaked)
    thread = cells["user-leak_thread-uncompiled-float32-cpu-prefill"]["signals"]["leaked_state"]
    assert any("fixture-leaked-thread" in item for item in thread)
    process = cells["user-leak_process-uncompiled-float32-cpu-prefill"]["signals"]["leaked_state"]
    assert any("child processes left running" in item for item in process)
    assert cells["user-abort-uncompiled-float32-cpu-prefill"]["status"] == "crash"


@pytest.mark.slow
def test_parallel_workers_write_one_complete_results_file(runs):
    cells = runs[("faulty", 2)]
    per_backend = 3 * len(AXES["shape"])  # per shape: uncompiled, default fullgraph, default breaks-allowed
    assert len(cells) == per_backend * len(FAULTY)
    assert all(cell["status"] for cell in cells.values())


def test_no_shell_true_anywhere_in_the_harness():
    """Commands are argv lists: nothing from cell ids, messages or config reaches a shell."""
    offenders = [str(path) for path in (REPO_ROOT / "harness").glob("*.py") if "shell=True" in path.read_text()]
    assert offenders == []


@pytest.mark.slow
def test_sigterm_keeps_finished_cells_and_resume_completes(tmp_path):
    doc = matrix_doc({"slow": fixture_backend("slow")},
                     axes={"mode": ["uncompiled"], "shape": ["decode", "prefill"], "dtype": ["float32", "bfloat16",
                                                                                            "float16"]})
    matrix = write_matrix(tmp_path / "matrix.yaml", doc)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--matrix", str(matrix), "--out", str(out),
                             "-n", "0"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results, reads = out / "results.json", 0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # every read of the live file must be valid JSON
        if results.exists():
            doc_now = json.loads(results.read_text())
            reads += 1
            if len(doc_now["cells"]) >= 2:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    partial = read_results(str(results))
    assert partial["complete"] is False and partial["interrupted"] is True
    assert 2 <= len(partial["cells"]) < 6 and reads > 1
    resumed = run_harness("run", "--matrix", str(matrix), "--out", str(out), "--resume", "-n", "0")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = read_results(str(results))
    assert final["complete"] is True and len(final["cells"]) == 6
    before = {c["id"]: c for c in partial["cells"]}
    for cell in final["cells"]:
        if cell["id"] in before:
            assert cell == before[cell["id"]]  # kept, not rerun


@pytest.mark.slow
def test_repeat_reports_a_varying_status_as_flaky(tmp_path):
    doc = matrix_doc({"flaky": fixture_backend("flaky")}, axes={"mode": ["uncompiled"]})
    matrix = write_matrix(tmp_path / "matrix.yaml", doc)
    proc = run_harness("run", "--matrix", str(matrix), "--out", str(tmp_path / "out"), "--repeat", "2", "-n", "0")
    cell = load_cells(tmp_path / "out")["user-flaky-uncompiled-float32-cpu-prefill"]
    assert proc.returncode == 1 and "FLAKY" in proc.stdout
    assert cell["verdict"] == "flaky" and cell["status"] != "pass"
    assert sorted(cell["signals"]["repeat_statuses"]) == ["pass", "runtime_error"]


@pytest.mark.slow
def test_memory_exhaustion_is_contained_and_paths_are_quoted(tmp_path):
    folder = tmp_path / "it's a dir with spaces"
    folder.mkdir()
    doc = matrix_doc({"exhaust_memory": fixture_backend("exhaust_memory"), "healthy": fixture_backend("healthy")},
                     axes={"mode": ["uncompiled"]}, memory_limit_gb=6)
    matrix = write_matrix(folder / "matrix.yaml", doc)
    proc = run_harness("run", "--matrix", str(matrix), "--out", str(tmp_path / "out"), "-n", "0")
    cells = load_cells(tmp_path / "out")
    hog = cells["user-exhaust_memory-uncompiled-float32-cpu-prefill"]
    assert proc.returncode == 1
    assert hog["status"] in ("runtime_error", "crash") and hog["verdict"] == "regression"
    assert cells["user-healthy-uncompiled-float32-cpu-prefill"]["status"] == "pass"
    argv = shlex.split(hog["repro"])
    assert argv[argv.index("--matrix") + 1] == portable_path(str(matrix))  # no absolute path in results.json
    argv = [local_path(arg) for arg in argv]  # `<tmp>/...` back to this machine's folder
    rerun = run_harness(*argv[3:], "--out", str(tmp_path / "again"))
    assert list(load_cells(tmp_path / "again")) == [hog["id"]]
    assert rerun.returncode == 1


@pytest.mark.parametrize("text, needle", [
    ('{"schema": 1, "cells": [', "not valid JSON"),
    ('{"schema": 99, "environment": {}, "cells": []}', "newer harness"),
    ('{"environment": {}, "cells": []}', "schema"),
    ('{"schema": 1, "cells": []}', "missing field"),
    ('{"schema": 1, "environment": {}, "cells": [{"id": "x"}]}', "missing field"),
    ('[1, 2]', "JSON object"),
])
def test_bad_results_files_get_one_clear_error(tmp_path, text, needle):
    path = tmp_path / "results.json"
    path.write_text(text)
    with pytest.raises(HarnessError) as info:
        read_results(str(path))
    assert needle in str(info.value) and str(path) in str(info.value)


def test_resume_without_results_is_a_usage_error(tmp_path):
    proc = run_harness("run", "--resume", "--out", str(tmp_path / "nothing"))
    assert proc.returncode == 2 and "nothing to resume" in proc.stderr


def test_html_escapes_what_comes_from_exception_messages(tmp_path):
    from tests.test_report import CLAIMS, cell, cpu_matrix, doc, render, write

    hostile = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
    cells = cpu_matrix()
    cells.append(cell("batched_mm", "default", "float32", False, shape="prefill", status="runtime_error",
                      error={"type": "RuntimeError", "message": hostile}))
    page = render([write(tmp_path / "r.json", doc(cells))], "html", None, CLAIMS, "cmd")
    assert page.count("<script") == 1 and "<img" not in page  # only the page's own inline script
    assert "&lt;script&gt;" in page and "&amp;" in page
