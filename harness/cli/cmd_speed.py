"""`python -m harness speed`: how fast the harness runs a matrix, cold and warm, vs one process per cell."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from harness.environment.machine import cpu_ticks, cpu_use
from harness.errors import HarnessError
from harness.portable import CHECKOUT

_REPO_ROOT = CHECKOUT


def add_parser(sub) -> None:
    """Register `speed`."""
    p = sub.add_parser("speed", help="benchmark the harness itself: cold, warm, and process-per-cell")
    p.add_argument("--matrix", default="matrix.yaml")
    p.add_argument("--source", default="reference")
    p.add_argument("--device", default="cpu")
    p.add_argument("-n", dest="workers", default="auto")
    p.add_argument("--warm-runs", type=int, default=3, metavar="N",
                   help="time the warm run N times and report the median (the machine's noise shows in the spread)")
    p.add_argument("--naive-sample", type=int, default=4, metavar="K",
                   help="compare with process-per-cell on every K-th cell (1 = all cells)")
    p.add_argument("--out", default=os.path.join("reports", "speed"), help="folder for speed.json")


def run(args: argparse.Namespace) -> int:
    """Measure and write `<out>/speed.json`; print a summary table."""
    from harness.cells.cell import expand_cells
    from harness.environment.machine import torch_version
    from harness.config.load import load_matrix

    from harness.cli.usage import check_input_file, check_output_dir

    # The runs below are subprocesses started in the checkout: paths given relative to here must not move.
    args.matrix, args.out = os.path.abspath(args.matrix), os.path.abspath(args.out)
    check_input_file(args.matrix, "--matrix")
    check_output_dir(args.out, "--out")
    if args.naive_sample < 1:
        raise HarnessError("must be >= 1", key="--naive-sample")
    if args.warm_runs < 1:
        raise HarnessError("must be >= 1", key="--warm-runs")
    matrix = load_matrix(args.matrix)
    cells = [c for c in expand_cells(matrix) if c.source == args.source and c.device == args.device]
    if not cells:
        raise HarnessError(f"no cell of source {args.source!r} on device {args.device!r} in {args.matrix}",
                           key="--source/--device")
    sample = [c.id for c in cells][::args.naive_sample]
    cache = tempfile.mkdtemp(prefix="harness-speed-inductor-")
    # Cold means cold: inductor keeps its precompiled C++ headers under $TMPDIR/torchinductor_<user>, outside
    # TORCHINDUCTOR_CACHE_DIR, so a fresh TMPDIR as well.
    tmpdir = os.path.join(cache, "tmp")
    os.makedirs(tmpdir)
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": os.path.join(cache, "inductor"), "TMPDIR": tmpdir}
    try:
        report: dict[str, Any] = {"cells": len(cells), "sample_cells": len(sample), "cpu_count": os.cpu_count(),
                                  "cpu_model": _cpu_model(), "python": sys.version.split()[0],
                                  "torch": torch_version(), "workers": args.workers, "load_before": os.getloadavg()}
        common = ["--matrix", args.matrix, "--source", args.source, "--device", args.device, "-q"]
        # Whether the cores were busy: idle core-seconds are where a faster design could still gain.
        report["cpu"] = cpu = {}
        report["cold_s"], cold = _harness(common + ["-n", args.workers], args.out, "cold", env, cpu)
        warm_runs = [_harness(common + ["-n", args.workers], args.out, "warm" if i == 0 else f"warm{i + 1}", env,
                              cpu) for i in range(args.warm_runs)]
        report["warm_runs_s"] = [seconds for seconds, _ in warm_runs]
        report["warm_s"] = statistics.median(report["warm_runs_s"])
        warm = warm_runs[0][1]
        report["warm_runs_identical"] = all(statuses == warm for _, statuses in warm_runs)
        report["executors"] = {run: _executor_starts(os.path.join(args.out, run)) for run in ("cold", "warm")}
        sample_args = common + ["-n", args.workers] + [arg for cid in sample for arg in ("--cell", cid)]
        report["sample_harness_warm_s"], sampled = _harness(sample_args, args.out, "sample", env)
        report["sample_naive_warm_s"], naive = _naive(matrix, sample, args, env)
        report["statuses_identical"] = all(naive[cid] == sampled[cid] == warm[cid] == cold[cid] for cid in sample)
        report["cold_warm_identical"] = cold == warm
        report["differences"] = {cid: {"cold": cold.get(cid), "warm": warm.get(cid), "naive": naive.get(cid)}
                                 for cid in sample if not naive[cid] == sampled[cid] == warm[cid] == cold[cid]}
        report["speedup_vs_naive"] = report["sample_naive_warm_s"] / report["sample_harness_warm_s"]
        report["load_after"] = os.getloadavg()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "speed.json"), "w") as fh:
        json.dump(report, fh, indent=1)
    for key in ("cells", "cold_s", "warm_s", "warm_runs_s", "sample_cells", "sample_harness_warm_s",
                "sample_naive_warm_s", "speedup_vs_naive", "statuses_identical", "cold_warm_identical",
                "warm_runs_identical", "cpu"):
        print(f"{key:>24}: {report[key]:.1f}" if isinstance(report[key], float) else f"{key:>24}: {report[key]}")
    return 0 if report["statuses_identical"] and report["cold_warm_identical"] and report["warm_runs_identical"] else 1


def _executor_starts(folder: str) -> dict[str, int]:
    """How the run's executors started: forked by the fork server, or spawned (a fallback or HARNESS_FORKSERVER=0)."""
    from harness.running.forkserver import FORKED_LOG_LINE

    logs = [name for name in os.listdir(os.path.join(folder, "logs")) if name.startswith("executor-")]
    forked = 0
    for name in logs:
        with open(os.path.join(folder, "logs", name), errors="replace") as fh:
            forked += FORKED_LOG_LINE in fh.read()
    return {"forked": forked, "spawned": len(logs) - forked}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "unknown")
    except OSError:
        return "unknown"


def _harness(run_args: list[str], out: str, name: str, env: dict[str, str],
             cpu: dict[str, Any] | None = None) -> tuple[float, dict[str, str]]:
    """Wall time of one `python -m harness run` and the status of each cell; its CPU use goes into `cpu[name]`."""
    folder = os.path.join(out, name)
    before = cpu_ticks()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", "run", *run_args, "--out", folder], cwd=_REPO_ROOT, env=env,
                   check=False, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    if cpu is not None:
        cpu[name] = cpu_use(before, cpu_ticks())
    with open(os.path.join(folder, "results.json")) as fh:
        return seconds, {c["id"]: c["status"] for c in json.load(fh)["cells"]}


def _naive(matrix, sample: list[str], args, env) -> tuple[float, dict[str, str]]:
    """The naive design: one fresh Python process per cell (imports torch, compiles, runs, exits), serially."""
    from harness.cells.cell import expand_cells

    by_id = {c.id: c for c in expand_cells(matrix)}
    statuses = {}
    start = time.perf_counter()
    for cid in sample:
        spec = _spec_for(matrix, by_id[cid])
        proc = subprocess.run([sys.executable, "-c", _NAIVE_SCRIPT], input=json.dumps(spec), text=True,
                              capture_output=True, cwd=_REPO_ROOT, env={**env, "PYTHONPATH": _REPO_ROOT},
                              check=False)
        statuses[cid] = json.loads(proc.stdout.splitlines()[-1])["status"] if proc.returncode == 0 else "crash"
    return time.perf_counter() - start, statuses


_NAIVE_SCRIPT = "import json,sys; from harness.measure.cell_run import run_cell; print(json.dumps(run_cell(json.load(sys.stdin)), default=str))"


def _spec_for(matrix, cell) -> dict[str, Any]:
    from harness.cells.spec import cell_spec

    return cell_spec(matrix, cell)
