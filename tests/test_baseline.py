"""Baselines: the diff kinds, `update-baseline`, and `run --baseline` (auto selection by environment)."""

from __future__ import annotations

import json

import pytest

from harness.results.baseline import check_run, diff_cells
from tests.conftest import fixture_backend, matrix_doc, run_harness, write_matrix
from tests.test_report import cell, doc, write


def _by_id(*cells):
    return {c["id"]: c for c in cells}


def test_every_kind_of_change_and_which_ones_gate():
    before = _by_id(cell("a"), cell("b", status="compile_error"), cell("c", status="compile_error"),
                    cell("d", max_rel_error=1e-3, dtype="bfloat16"), cell("e", compile_s=2.0), cell("gone"))
    after = _by_id(cell("a", status="runtime_error"), cell("b"),
                   cell("c", status="mismatch", error={"type": "Mismatch", "message": "1 % off"}),
                   cell("d", max_rel_error=9e-3, dtype="bfloat16"), cell("e", compile_s=9.0), cell("new"))
    changes = {c.id.split("-")[1]: c for c in diff_cells(before, after)}
    assert {k: c.kind for k, c in changes.items()} == {
        "a": "new_failure", "b": "fixed", "c": "failure_changed", "d": "drift", "e": "compile_time",
        "gone": "removed", "new": "added"}
    assert {k for k, c in changes.items() if c.gating} == {"a", "b", "c"}
    assert changes["c"].before == "compile_error (Unsupported)" and changes["c"].after == "mismatch (Mismatch)"
    assert "grew x9" in changes["d"].detail


def test_a_different_grouped_mm_path_is_reported_without_gating():
    before = _by_id(cell("g", path="fallback"))
    (change,) = diff_cells(before, _by_id(cell("g", path=None)))
    assert (change.kind, change.before, change.after, change.gating) == ("path_changed", "fallback", "not seen", False)


def test_small_numbers_are_not_drift_and_partial_runs_are_not_removals():
    before = _by_id(cell("a", max_rel_error=1e-8), cell("b", compile_s=0.1), cell("c"))
    after = _by_id(cell("a", max_rel_error=9e-8), cell("b", compile_s=0.9))
    assert diff_cells(before, after, missing=False) == []  # fp32 rounding, sub-second compile, c not rerun


def test_update_baseline_writes_one_file_per_environment_and_prints_changes(tmp_path):
    cpu = write(tmp_path / "cpu.json", doc([cell("a"), cell("b")]))
    gpu = write(tmp_path / "gpu.json", doc([cell("a", device="cuda")], cc="9.0"))
    folder = tmp_path / "baselines"
    proc = run_harness("update-baseline", cpu, gpu, "--dir", str(folder))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["torch2.13.0-transformers5.17.0-cpu.json",
                                                       "torch2.13.0-transformers5.17.0-cuda-sm90.json"]
    assert run_harness("update-baseline", cpu, "--dir", str(folder), "--check").returncode == 0

    changed = write(tmp_path / "cpu2.json", doc([cell("a", status="compile_error")]))
    check = run_harness("update-baseline", changed, "--dir", str(folder), "--check")
    assert check.returncode == 1 and "new_failure" in check.stdout
    proc = run_harness("update-baseline", changed, "--dir", str(folder))
    assert proc.returncode == 0 and "1 new_failure" in proc.stdout
    kept = json.loads((folder / "torch2.13.0-transformers5.17.0-cpu.json").read_text())
    assert {c["id"].split("-")[1]: c["status"] for c in kept["cells"]} == {"a": "compile_error", "b": "pass"}
    proc = run_harness("update-baseline", changed, "--dir", str(folder), "--replace")
    assert "1 removed" in proc.stdout


def test_check_run_picks_the_baseline_of_the_environment(tmp_path):
    folder = tmp_path / "baselines"
    assert run_harness("update-baseline", write(tmp_path / "base.json", doc([cell("a", status="compile_error")])),
                       "--dir", str(folder)).returncode == 0
    fixed = write(tmp_path / "run.json", doc([cell("a")]))
    lines, gate = check_run(fixed, "auto", str(folder))
    assert gate and "1 fixed" in lines[0] and "update-baseline" in lines[-1]
    other = write(tmp_path / "other.json", doc([cell("a")], torch="2.14.1"))
    lines, gate = check_run(other, "auto", str(folder))
    assert not gate and lines[0].startswith("baseline: none for torch2.14.1")
    # An explicit baseline of another torch compares the cells of the same device.
    lines, gate = check_run(other, str(folder / "torch2.13.0-transformers5.17.0-cpu.json"), str(folder))
    assert gate and "1 fixed" in lines[0]


@pytest.mark.slow
def test_run_with_baseline_exits_1_on_a_new_failure(tmp_path):
    axes = {"mode": ["uncompiled"], "fullgraph": [False]}
    matrix = write_matrix(tmp_path / "matrix.yaml", matrix_doc({"subject": fixture_backend("wrong_numerics")},
                                                               axes=axes))
    cell_id = "user-subject-uncompiled-float32-cpu-prefill"
    recorded = dict(cell("x", mode="uncompiled"), id=cell_id, source="user", backend="subject", shape="prefill")
    # A baseline of another environment: an explicit file is compared cell by cell on the same device.
    baseline = write(tmp_path / "baseline.json", doc([recorded], torch="2.0.0"))
    proc = run_harness("run", "--matrix", str(matrix), "--out", str(tmp_path / "out"), "-n", "0",
                       "--baseline", baseline)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "1 new_failure" in proc.stdout and f"new_failure     {cell_id}: pass -> mismatch" in proc.stdout
    missing = run_harness("run", "--matrix", str(matrix), "--out", str(tmp_path / "three"), "--baseline",
                          str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "no such baseline" in missing.stderr
