"""What a release beyond the first costs in a sweep, against a cold run of the same slice.

Environments are built first (their cost is reported apart). Then:
- sweep: the releases in order, sharing one inductor cache (TORCHINDUCTOR_CACHE_DIR), one Python bytecode cache
  (PYTHONPYCACHEPREFIX) and one TMPDIR, all empty at the start: the first release runs cold, the others reuse what
  it compiled;
- cold: every release but the first again, each with an empty inductor cache, an empty bytecode cache and a fresh
  TMPDIR (where inductor keeps its precompiled C++ headers), as a sweep of that release alone would start.
The ratio per release is its sweep run over its cold run (target: at most 1/3). Statuses must be the same in
both runs of a release. Every run also counts the graphs it compiled (new FX graph cache entries, the warm-up's
included): 0 in the sweep means inductor reused every graph. Figures go to OUT/bench.json.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from typing import Any, Callable

from harness.history import envs as history_envs
from harness.history.sweep import SweepConfig, pair_dir, run_pair, say
from harness.results.results_json import atomic_write_json

TARGET_RATIO = 1 / 3


def bench(config: SweepConfig, log: Callable[[str], None] = say) -> dict[str, Any]:
    """Time the sweep and the cold runs of `config.releases` (first torch only); returns bench.json's content."""
    torch, releases = config.torches[0], config.releases
    root = os.path.abspath(config.out)
    for sub in ("sweep", "cold", "caches"):
        shutil.rmtree(os.path.join(root, sub), ignore_errors=True)
    envs = {}
    for release in releases:
        start = time.perf_counter()
        env = history_envs.ensure(config.envs, torch, release, config.envs_kind, log=lambda m: log(f"  env: {m}"),
                                  wheels=config.wheels)
        envs[release] = {"build_s": round(env.build_s, 1), "cached": env.build_s == 0.0,
                         "wall_s": round(time.perf_counter() - start, 1)}
    sweep_conf = _fresh(config, os.path.join(root, "sweep"), os.path.join(root, "caches", "shared"))
    sweep_runs = {}
    for release in releases:
        log(f"sweep: transformers {release} ({'cold' if not sweep_runs else 'shared caches'})")
        sweep_runs[release] = _timed(sweep_conf, torch, release, log)
    cold_runs = {}
    for release in releases[1:]:
        log(f"cold: transformers {release} (empty inductor and bytecode caches, fresh TMPDIR)")
        cold_conf = _fresh(config, os.path.join(root, "cold"), os.path.join(root, "caches", f"cold-{release}"))
        cold_runs[release] = _timed(cold_conf, torch, release, log)
        shutil.rmtree(cold_conf.env_vars["TMPDIR"], ignore_errors=True)
        shutil.rmtree(os.path.join(root, "caches", f"cold-{release}"), ignore_errors=True)
    shutil.rmtree(sweep_conf.env_vars["TMPDIR"], ignore_errors=True)
    rows = []
    for release in releases:
        sweep, cold = sweep_runs[release], cold_runs.get(release) or {}
        sweep_s, cold_s = sweep.get("run_s"), cold.get("run_s")
        same = None
        if release in cold_runs:
            same = _statuses(pair_dir(sweep_conf.out, torch, release)) == _statuses(
                pair_dir(os.path.join(root, "cold"), torch, release))
        rows.append({"transformers": release, "sweep_run_s": sweep_s, "cold_run_s": cold_s,
                     "ratio": round(sweep_s / cold_s, 3) if sweep_s and cold_s else None,
                     "statuses_identical": same, "cells": sweep.get("cells"),
                     "sweep_compiled": sweep.get("compiled"), "cold_compiled": cold.get("compiled"),
                     "sweep_load": sweep.get("load"), "cold_load": cold.get("load"), "env": envs[release]})
    doc = {"schema": 2, "torch": torch, "releases": releases, "run_args": config.run_args, "cells": config.cells,
           "workers": config.workers, "envs_kind": config.envs_kind, "target_ratio": TARGET_RATIO, "rows": rows,
           "cpu_count": os.cpu_count(), "load_average": _load(),
           "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_json(os.path.join(root, "bench.json"), doc)
    return doc


def lines(doc: dict[str, Any]) -> list[str]:
    """A Markdown table of bench.json (graphs compiled: new FX graph cache entries of the run)."""
    out = ["| transformers | env build (s) | sweep run (s) | graphs compiled | cold run (s) | graphs compiled "
           "| sweep / cold | statuses identical |",
           "|---|---|---|---|---|---|---|---|"]
    for row in doc["rows"]:
        env = "cached" if row["env"]["cached"] else f"{row['env']['build_s']:.0f}"
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "— (first: cold)"
        same = {True: "yes", False: "NO", None: "—"}[row["statuses_identical"]]
        cold = f"{row['cold_run_s']:.1f}" if row["cold_run_s"] else "—"
        out.append(f"| {row['transformers']} | {env} | {row['sweep_run_s']:.1f} | {_graphs(row.get('sweep_compiled'))} "
                   f"| {cold} | {_graphs(row.get('cold_compiled'))} | {ratio} | {same} |")
    return out


def _graphs(compiled: dict[str, int] | None) -> str:
    return "—" if not compiled else str(compiled.get("fxgraph", 0))


def _timed(config: SweepConfig, torch: str, release: str, log) -> dict[str, Any]:
    """One run of the benchmark, with the load average when it started (the machine is shared)."""
    load = _load()
    return {**_checked(run_pair(config, torch, release, log)), "load": load[0] if load else None}


def _checked(entry: dict[str, Any]) -> dict[str, Any]:
    """The pair's entry; an interrupted run stops the benchmark (no figure from half a run)."""
    if entry.get("state") == "interrupted":
        raise KeyboardInterrupt
    return entry


def _fresh(config: SweepConfig, out: str, caches: str) -> SweepConfig:
    """The configuration of one phase: empty inductor and bytecode caches under `caches`, a fresh TMPDIR."""
    for sub in ("inductor", "pycache"):
        os.makedirs(os.path.join(caches, sub), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="harness-history-bench-")
    return replace(config, out=out, inductor_cache=os.path.join(caches, "inductor"),
                   pycache=os.path.join(caches, "pycache"), env_vars={**config.env_vars, "TMPDIR": tmp})


def _statuses(folder: str) -> dict[str, str]:
    try:
        with open(os.path.join(folder, "results.json"), encoding="utf-8") as fh:
            return {c["id"]: c["status"] for c in json.load(fh).get("cells", [])}
    except (OSError, ValueError):
        return {}


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
