"""The fork server only changes how fast an executor starts: same results as spawned executors, safe fallback."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from harness.running import forkserver
from harness.cells.cell import expand_cells
from harness.cells.spec import cell_spec
from harness.running.executor import Executor, executor_env
from harness.config.load import load_matrix
from tests.conftest import fixture_backend, load_cells, matrix_doc, run_harness, write_matrix

FAULTS = ["healthy", "abort", "segfault", "hang", "leak_thread", "runtime_failure", "exhaust_memory", "healthy_again"]
FORKED_LINE = forkserver.FORKED_LOG_LINE
SPAWNED_LINE = "spawning instead of forking"


def _matrix(folder):
    backends = {name: fixture_backend("healthy" if name == "healthy_again" else name) for name in FAULTS}
    doc = matrix_doc(backends, axes={"mode": ["uncompiled"], "shape": ["decode"]}, time_limit_s=20,
                     memory_limit_gb=6)
    return write_matrix(folder / "matrix.yaml", doc)


def _logs(out):
    return [path.read_text() for path in sorted((out / "logs").glob("executor-*.log"))]


@pytest.fixture(scope="module")
def both_designs(tmp_path_factory):
    """The same faulty cells, once with forked executors and once with spawned ones (HARNESS_FORKSERVER=0)."""
    runs = {}
    for design, env in (("forked", {}), ("spawned", {forkserver.ENV_VAR: "0"})):
        folder = tmp_path_factory.mktemp(design)
        proc = run_harness("run", "--matrix", str(_matrix(folder)), "--out", str(folder / "out"), "-n", "1", env=env)
        assert proc.returncode in (0, 1), proc.stderr[-2000:]
        runs[design] = (load_cells(folder / "out"), _logs(folder / "out"))
    return runs


@pytest.mark.slow
def test_forked_and_spawned_executors_give_the_same_results(both_designs):
    def observed(cells):
        return {cid: (c["status"], c["verdict"], (c["error"] or {}).get("type"), c["signals"].get("max_rel_error"),
                      bool(c["signals"].get("leaked_state"))) for cid, c in cells.items()}

    forked, spawned = both_designs["forked"][0], both_designs["spawned"][0]
    assert observed(forked) == observed(spawned)
    statuses = {cid.split("-")[1]: cell["status"] for cid, cell in forked.items()}
    assert statuses["abort"] == statuses["segfault"] == "crash"
    assert statuses["hang"] == "timeout"
    assert statuses["healthy"] == statuses["healthy_again"] == "pass"
    messages = {cid.split("-")[1]: (cell["error"] or {}).get("message", "") for cid, cell in forked.items()}
    assert "SIGSEGV" in messages["segfault"] and "SIGABRT" in messages["abort"]


@pytest.mark.slow
def test_each_design_really_ran(both_designs):
    forked_logs, spawned_logs = both_designs["forked"][1], both_designs["spawned"][1]
    # the first executor, then one for each crash, timeout and leaked thread: as many in both designs
    heads = "\n---\n".join(log[:1500] for log in forked_logs + spawned_logs)
    assert len(forked_logs) == len(spawned_logs) == 5, heads
    assert all(FORKED_LINE in log and SPAWNED_LINE not in log for log in forked_logs)
    assert not any(FORKED_LINE in log for log in spawned_logs)


def _spec(tmp_path, backend="healthy"):
    matrix = load_matrix(str(write_matrix(tmp_path / "matrix.yaml", matrix_doc(
        {backend: fixture_backend(backend)}, axes={"mode": ["uncompiled"], "shape": ["decode"]}))))
    return cell_spec(matrix, expand_cells(matrix)[0])


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A fork server started as `harness run` starts it, announced to this process."""
    started = forkserver.start(executor_env(None), str(tmp_path / "forkserver.log"))
    assert started is not None
    monkeypatch.setenv(forkserver.ENV_VAR, started[1])
    yield started
    forkserver.stop(started)


@pytest.mark.slow
def test_executor_is_forked_and_its_exit_is_reported(tmp_path, server):
    executor = Executor(str(tmp_path / "logs"), "t", threads=1)
    assert executor.run(_spec(tmp_path), 120)["status"] == "pass"
    assert isinstance(executor._proc, forkserver.ForkedExecutor)
    pid = executor._proc.pid
    assert os.getpgid(pid) == pid  # its own process group, as a spawned executor
    proc = executor._proc
    executor.close()
    assert proc.returncode == -signal.SIGKILL


def _log_of_a_spawned_executor(tmp_path) -> str:
    """Run a healthy cell, check its executor was spawned (not forked), return the executor's log."""
    executor = Executor(str(tmp_path / "logs"), "t", threads=1)
    try:
        assert executor.run(_spec(tmp_path), 120)["status"] == "pass"
        assert isinstance(executor._proc, subprocess.Popen)
    finally:
        executor.close()
    return (tmp_path / "logs" / "executor-t-1.log").read_text()


@pytest.mark.slow
def test_a_different_environment_falls_back_to_spawning(tmp_path, server, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_MAX_AUTOTUNE", "1")  # read by inductor at import: forking would ignore it
    log = _log_of_a_spawned_executor(tmp_path)
    assert SPAWNED_LINE in log and "TORCHINDUCTOR_MAX_AUTOTUNE" in log


@pytest.mark.slow
def test_a_dead_fork_server_falls_back_to_spawning(tmp_path, server):
    server[0].kill()
    server[0].wait()
    assert "fork server unavailable" in _log_of_a_spawned_executor(tmp_path)


def test_comparable_env_keeps_only_what_torch_reads_at_import():
    env = {"TORCHINDUCTOR_CACHE_DIR": "/c", "PYTHONPATH": "/r", "OMP_NUM_THREADS": "4", "HOME": "/h",
           "PYTHONFAULTHANDLER": "1", "CUDA_VISIBLE_DEVICES": "0"}
    assert forkserver.comparable_env(env) == {"TORCHINDUCTOR_CACHE_DIR": "/c", "PYTHONPATH": "/r",
                                              "CUDA_VISIBLE_DEVICES": "0"}
