"""`merge`: shards and machines join into one document; disagreeing repeats are flaky; cross-version diff."""

from __future__ import annotations

import json

from harness.results.baseline import cross_env_changes
from harness.results.observations import load_observations
from harness.results.merge import merge
from harness.results.results_json import read_results
from tests.conftest import run_harness
from tests.test_report import cell, cpu_matrix, doc, write


def test_shards_join_and_agreeing_repeats_count_once(tmp_path):
    cells = cpu_matrix()
    a = write(tmp_path / "a.json", doc(cells[::2], shard="1/2"))
    b = write(tmp_path / "b.json", doc(cells[1::2], shard="2/2"))
    again = write(tmp_path / "c.json", doc(cells[:3]))
    merged = merge(load_observations([a, b, again]))
    assert len(merged.cells) == len(cells) and not merged.flaky
    assert merged.cells[("torch2.13.0-transformers5.17.0-cpu", cells[0]["id"])]["observations"] == 2


def test_two_different_observations_in_one_environment_are_flaky_not_overwritten(tmp_path):
    ok = cell("batched_mm")
    broken = cell("batched_mm", status="mismatch")
    paths = [write(tmp_path / "a.json", doc([ok])), write(tmp_path / "b.json", doc([broken]))]
    merged = merge(load_observations(paths))
    (item,) = merged.flaky
    assert item["id"] == ok["id"] and [o["status"] for o in item["observations"]] == ["pass", "mismatch"]
    merged_cell = merged.cells[(item["env"], ok["id"])]
    assert merged_cell["flaky"] and merged_cell["status"] == "pass"
    # Flakiness is the verdict, from judge(), as for `run --repeat`: the first file said ok, the merge says flaky.
    assert ok["verdict"] == "ok" and merged_cell["verdict"] == "flaky"
    assert merged_cell["verdict_reason"] == "status varies over 2 runs: pass, mismatch (torch._dynamo.exc.Unsupported)"


def test_the_same_cell_on_other_torch_or_device_is_not_flaky(tmp_path):
    a = write(tmp_path / "a.json", doc([cell("batched_mm")]))
    b = write(tmp_path / "b.json", doc([cell("batched_mm", status="mismatch")], torch="2.14.1"))
    merged = merge(load_observations([a, b]))
    assert not merged.flaky and len(merged.cells) == 2
    ((before, after, changes),) = cross_env_changes(merged)
    assert (before.torch, after.torch) == ("2.13.0+cpu", "2.14.1")
    assert [(c.kind, c.gating) for c in changes] == [("new_failure", True)]


def test_repeat_flaky_verdict_of_one_run_is_kept(tmp_path):
    flaky = cell("batched_mm", status="mismatch", verdict="flaky", repeat_statuses=["pass", "mismatch"])
    merged = merge(load_observations([write(tmp_path / "a.json", doc([flaky]))]))
    assert [o["status"] for o in merged.flaky[0]["observations"]] == ["pass", "mismatch"]


def test_merge_cli_writes_document_diff_and_reports_and_flaky_exits_1(tmp_path):
    old = write(tmp_path / "old.json", doc(cpu_matrix()))
    newer = cpu_matrix()
    newer[0] = cell("batched_mm", "default", "bfloat16", True, status="compile_error")
    new = write(tmp_path / "new.json", doc(newer, torch="2.14.1"))
    out = tmp_path / "merged"
    proc = run_harness("merge", old, new, "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "torch 2.13.0 / tf 5.17.0 / cpu → torch 2.14.1 / tf 5.17.0 / cpu: 1 new_failure" in proc.stdout
    merged = read_results(str(out / "merged.json"))  # the merged document is a valid results file
    assert merged["kind"] == "merged" and len(merged["cells"]) == 2 * len(newer)
    diff = (out / "diff.md").read_text()
    assert "**new_failure**" in diff and newer[0]["id"] in diff
    assert json.loads((out / "diff.json").read_text())["sections"][0]["changes"][0]["kind"] == "new_failure"
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert "torch 2.14.1" in (out / "report.md").read_text()

    # Re-merging the merged document with a disagreeing observation: flaky, exit 1.
    flip = write(tmp_path / "flip.json", doc([cell("batched_mm", "default", "bfloat16", True, status="mismatch")],
                                             torch="2.14.1"))
    proc = run_harness("merge", str(out / "merged.json"), flip, "--out", str(tmp_path / "again"))
    assert proc.returncode == 1 and "FLAKY " + newer[0]["id"] in proc.stdout
