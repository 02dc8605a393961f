"""`harness speed`: the benchmark of the harness itself runs and reports what it measured."""

import json

import pytest

from harness.environment.machine import cpu_use
from tests.conftest import fixture_backend, matrix_doc, run_harness, write_matrix


@pytest.mark.slow
def test_speed_reports_cold_warm_and_naive_with_identical_statuses(tmp_path):
    doc = matrix_doc({"healthy": fixture_backend("healthy"), "runtime_failure": fixture_backend("runtime_failure")},
                     axes={"mode": ["uncompiled", "default"], "fullgraph": [True], "shape": ["decode"]})
    matrix = write_matrix(tmp_path / "matrix.yaml", doc)
    proc = run_harness("speed", "--matrix", str(matrix), "--source", "user", "--device", "cpu", "-n", "1",
                       "--naive-sample", "1", "--warm-runs", "2", "--out", str(tmp_path / "speed"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "speed" / "speed.json").read_text())
    assert report["cells"] == report["sample_cells"] == 4
    assert report["statuses_identical"] and report["cold_warm_identical"] and report["differences"] == {}
    assert report["warm_runs_identical"] and len(report["warm_runs_s"]) == 2
    assert min(report["warm_runs_s"]) <= report["warm_s"] <= max(report["warm_runs_s"])
    assert report["cold_s"] > 0 and report["warm_s"] > 0 and report["speedup_vs_naive"] > 0
    assert report["executors"] == {"cold": {"forked": 1, "spawned": 0}, "warm": {"forked": 1, "spawned": 0}}
    assert report["torch"] and report["cpu_model"]
    assert set(report["cpu"]) == {"cold", "warm", "warm2"}
    assert all(0 <= use["busy"] <= 1 and use["idle_core_s"] >= 0 for use in report["cpu"].values())
    statuses = {c["id"]: c["status"] for c in
                json.loads((tmp_path / "speed" / "warm" / "results.json").read_text())["cells"]}
    assert sorted(statuses.values()) == ["pass", "pass", "runtime_error", "runtime_error"]


def test_cpu_use_from_two_proc_stat_samples(monkeypatch):
    monkeypatch.setattr("os.sysconf", lambda name: 100)
    # 2 cores for 10 s = 2000 ticks, 500 of them idle: 75 % busy, 5 core-seconds idle.
    assert cpu_use((10_000, 4_000), (12_000, 4_500)) == {"busy": 0.75, "idle_core_s": 5.0}
    assert cpu_use(None, (1, 1)) is None and cpu_use((5, 1), (5, 1)) is None
