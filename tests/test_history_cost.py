"""What a release beyond the first costs (issue 15): the runs share inductor's and Python's compiled artefacts.

A fake environment python stands in for `harness run`: it records the environment it got and "compiles" its graphs
the way inductor's FX graph cache does (an entry per graph key, written only when missing), so the tests see
which graphs a run compiled and which it reused.
"""

from __future__ import annotations

import json
import os
import stat
import sys

from harness.history import bench as history_bench, envs as history_envs, sweep as history_sweep

FAKE_RUN = """#!{python}
import json, os, sys
args = sys.argv[1:]
if args[0] == "-c":  # registered_in's probe: where transformers lives
    print(os.environ["FAKE_TF"]); sys.exit(0)
keys = ("TORCHINDUCTOR_CACHE_DIR", "PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE", "TMPDIR")
with open(os.environ["FAKE_LOG"], "a") as fh:
    fh.write(json.dumps({{k: os.environ.get(k) for k in keys}}) + "\\n")
for graph in os.environ["FAKE_GRAPHS"].split(","):  # one FX graph cache entry per graph, as inductor writes them
    entry = os.path.join(os.environ["TORCHINDUCTOR_CACHE_DIR"], "fxgraph", graph[:2], graph, "entry")
    if not os.path.exists(entry):
        os.makedirs(os.path.dirname(entry), exist_ok=True)
        open(entry, "w").close()
out = args[args.index("--out") + 1]
os.makedirs(out, exist_ok=True)
json.dump({{"complete": True, "cells": [{{"id": "x", "status": "pass"}}]}}, open(os.path.join(out, "results.json"), "w"))
"""


def _fake_environments(tmp_path, monkeypatch) -> str:
    fake = tmp_path / "python"
    fake.write_text(FAKE_RUN.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    tf = tmp_path / "tf" / "transformers"
    (tf / "integrations").mkdir(parents=True)
    (tf / "integrations" / "moe.py").write_text('class ExpertsInterface:\n    _global_mapping = {"grouped_mm": None}\n')
    log = tmp_path / "runs.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_TF", str(tf))
    monkeypatch.setenv("FAKE_GRAPHS", "fwd1,fwd2")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # as on the machine of the first benchmark
    monkeypatch.setattr(history_envs, "ensure", lambda root, torch, release, kind="shared-torch", log=None, wheels=None:
                        history_envs.Env("env", str(fake), torch, release, kind, 0.0, "transformers==" + release))
    return str(log)


def _runs(log: str) -> list[dict]:
    with open(log, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_runs_share_a_bytecode_cache_and_count_the_graphs_they_compiled(tmp_path, monkeypatch):
    log = _fake_environments(tmp_path, monkeypatch)
    config = history_sweep.SweepConfig(["5.5.0", "5.5.1"], ["2.13.0"], str(tmp_path / "out"), str(tmp_path / "envs"),
                                       str(tmp_path / "inductor"), ["-k", "x"], pycache=str(tmp_path / "pycache"))
    assert history_sweep.sweep(config, log=lambda m: None) == 0
    for run in _runs(log):
        # Without the bytecode cache every process compiled torch's and transformers' sources again.
        assert run["PYTHONPYCACHEPREFIX"] == str(tmp_path / "pycache")
        assert run["PYTHONDONTWRITEBYTECODE"] is None
        assert run["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "inductor")
    pairs = history_sweep.read_sweep(config.out)["pairs"]
    assert pairs["2.13.0/5.5.0"]["compiled"] == {"fxgraph": 2, "aotautograd": 0}
    assert pairs["2.13.0/5.5.1"]["compiled"] == {"fxgraph": 0, "aotautograd": 0}  # every graph reused
    assert os.environ["PYTHONDONTWRITEBYTECODE"] == "1"  # only the runs lose it


def test_bench_shares_caches_in_the_sweep_and_starts_each_cold_run_empty(tmp_path, monkeypatch):
    log = _fake_environments(tmp_path, monkeypatch)
    out = tmp_path / "bench"
    config = history_sweep.SweepConfig(["5.5.0", "5.5.1", "5.5.2"], ["2.13.0"], str(out), str(tmp_path / "envs"),
                                       str(tmp_path / "unused"), ["-k", "x"])
    doc = history_bench.bench(config, log=lambda m: None)
    sweep, cold = _runs(log)[:3], _runs(log)[3:]
    assert len(cold) == 2
    assert len({(r["TORCHINDUCTOR_CACHE_DIR"], r["PYTHONPYCACHEPREFIX"], r["TMPDIR"]) for r in sweep}) == 1
    shared = {sweep[0]["TORCHINDUCTOR_CACHE_DIR"], sweep[0]["PYTHONPYCACHEPREFIX"], sweep[0]["TMPDIR"]}
    assert len({r["TORCHINDUCTOR_CACHE_DIR"] for r in cold} | {r["PYTHONPYCACHEPREFIX"] for r in cold}) == 4
    assert not shared & {value for run in cold for value in run.values()}
    assert all(r["PYTHONDONTWRITEBYTECODE"] is None for r in sweep + cold)
    assert not any(os.path.exists(r["TORCHINDUCTOR_CACHE_DIR"]) or os.path.exists(r["TMPDIR"]) for r in cold)
    rows = {row["transformers"]: row for row in doc["rows"]}
    assert rows["5.5.0"]["sweep_compiled"]["fxgraph"] == 2 and rows["5.5.0"]["cold_compiled"] is None
    for release in ("5.5.1", "5.5.2"):
        assert rows[release]["sweep_compiled"]["fxgraph"] == 0  # reused what 5.5.0 compiled
        assert rows[release]["cold_compiled"]["fxgraph"] == 2
        assert rows[release]["statuses_identical"] is True
    table = history_bench.lines(doc)
    assert table[0].count("graphs compiled") == 2
    assert table[3].startswith("| 5.5.1 | cached |") and "| 0 |" in table[3] and "| 2 |" in table[3]
    assert json.loads((out / "bench.json").read_text())["schema"] == 2
