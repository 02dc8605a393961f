"""Run a benchmark: ceilings, then every item in priority order within the time budget, results written as it goes."""

from __future__ import annotations

import gc
import time
from typing import Callable

import torch

from harness.bench.ceilings import measure_ceilings
from harness.bench.config import BenchConfig, BenchShape, Item, plan_items
from harness.bench.point import PointContext, measure_point, skipped_point
from harness.bench.results import BenchRecorder, results_path
from harness.bench.subjects import (
    TRANSFORMERS_EAGER_CLASS,
    BackendUnavailable,
    backend_function,
    build_experts,
    compiled,
    uses_cudagraphs,
)
from harness.bench.timing import CPU_MEMORY_METHOD, CUDA_MEMORY_METHOD, cache_flusher, loadavg

# First guesses of a compile setting's compile cost (s); an item starts only if its expected compile cost is
# left in the budget, so a run does not spend its end inside a compile it cannot finish. The expectation is the
# largest cost seen in this run for the same setting and backend (e.g. grouped_mm), else the largest of the guess
# and every cost seen for the same setting.
_COMPILE_GUESS_S = {"uncompiled": 0.0, "default": 30.0, "reduce-overhead": 30.0, "max-autotune-no-cudagraphs": 90.0,
                    "max-autotune": 120.0}
_ITEM_MIN_S = 5.0

PROTOCOL = ("per point: inputs drawn on CPU from a seeded generator ({sets} sets, rotated call by call; uniform "
            "top-k routing), 1 first call (compile included), warm-up calls (3 compiled, 1 uncompiled), "
            "then n timed calls with n = clamp(target_s / call time, min_reps, max_reps); before each timed call "
            "the last-level cache is flushed by writing a {flush_mib:.0f} MiB buffer and the device is idle, so "
            "launch overhead counts ({timer}); torch.compile(mode, fullgraph=False, dynamic=None) as transformers' "
            "CompileConfig, torch._dynamo.reset() between items; under torch.no_grad()")


def run_bench(config: BenchConfig, out_dir: str, argv: list[str], progress: Callable[[str], None] = print) -> dict:
    """Measure everything `config` asks for within its budget; returns the results document (also on disk)."""
    from harness.environment.machine import collect

    device = config.device
    if config.threads:
        torch.set_num_threads(config.threads)
    flush, flush_bytes = cache_flusher(device)
    environment = {**collect((device,)), "torch_threads": torch.get_num_threads()}
    recorder = BenchRecorder(results_path(out_dir, device, config.tag), {
        "device": device, "argv": argv, "config": config.to_json(), "environment": environment,
        "protocol": PROTOCOL.format(sets=config.input_sets, flush_mib=flush_bytes / 2**20,
                                    timer="CUDA events" if device == "cuda" else "time.perf_counter"),
        "memory_method": CUDA_MEMORY_METHOD if device == "cuda" else CPU_MEMORY_METHOD,
        "transformers_eager": f"{TRANSFORMERS_EAGER_CLASS}.forward (unwrapped), run on backends.experts.Experts",
        "loadavg_before": loadavg(), "loadavg_after": None,
        "note": "CPU results come from a 2-core machine shared with other work: see loadavg_* per run and item"
        if device == "cpu" else None,
    })
    try:
        _run(config, recorder, flush, progress)
    except KeyboardInterrupt:
        recorder.doc.update(interrupted=True, loadavg_after=loadavg())
        recorder.write()
        raise
    recorder.doc.update(complete=True, loadavg_after=loadavg())
    recorder.write()
    progress(f"wrote {recorder.path}")
    return recorder.doc


def _run(config: BenchConfig, recorder: BenchRecorder, flush, progress) -> None:
    """The measuring loop (see run_bench)."""
    started = time.monotonic()
    deadline = started + config.budget_s
    ceilings = None
    if config.device == "cuda":  # the roofline is a GPU notion here; CPU points keep their achieved rates
        ceilings = measure_ceilings(config.device, config.dtypes)
        recorder.set("ceilings", ceilings)
        progress(f"ceilings: copy {ceilings['copy_bytes_per_s'] / 1e9:.0f} GB/s, matmul "
                 + ", ".join(f"{k} {v / 1e12:.0f} TFLOP/s" for k, v in ceilings["matmul_flops_per_s"].items()))
    memory_limit = config.memory_limit_bytes or _default_memory_limit(config.device)
    recorder.set("memory_limit_bytes", memory_limit)
    modules: dict[tuple[str, str], object] = {}
    references: dict[tuple[str, str, int], torch.Tensor] = {}
    shapes = {shape.name: shape for shape in config.shapes}

    def reference(shape: BenchShape, dtype: str, tokens: int, inputs) -> torch.Tensor:
        key = (shape.name, dtype, tokens)
        if key not in references:
            from backends.reference import eager_experts_forward

            references[key] = eager_experts_forward(modules[(shape.name, dtype)], *inputs)
        return references[key]

    ctx = PointContext(config, flush, ceilings, memory_limit, reference)
    compile_cost, observed = dict(_COMPILE_GUESS_S), {}
    items = plan_items(config)
    for number, item in enumerate(items, 1):
        shape = shapes[item.shape]
        left = deadline - time.monotonic()
        needed = observed.get((item.mode, item.backend), compile_cost[item.mode]) + _ITEM_MIN_S
        if left < needed:
            recorder.add_item(_item_record(item, "skipped", f"time budget: ~{needed:.0f} s needed, {left:.0f} s left"))
            continue
        key = (shape.name, item.dtype)
        if key not in modules:
            modules[key] = build_experts(shape, getattr(torch, item.dtype), config.device, config.seed)
        label = f"[{number}/{len(items)} {time.monotonic() - started:4.0f}s/{config.budget_s:.0f}s] {item.label()}"
        record = _run_item(ctx, item, shape, modules[key], deadline, recorder, progress, label)
        if record.get("compile_s"):
            cost_key = (item.mode, item.backend)
            observed[cost_key] = max(observed.get(cost_key, 0.0), record["compile_s"])
            compile_cost[item.mode] = max(compile_cost[item.mode], record["compile_s"])
        recorder.add_item(record)


def _run_item(ctx: PointContext, item: Item, shape: BenchShape, module, deadline: float, recorder, progress,
              label: str) -> dict:
    """Measure one item over every token count; returns its item record (points are recorded as they finish)."""
    device = ctx.config.device
    before = loadavg()
    _reset(device)
    allocated_before = torch.cuda.memory_allocated() if device == "cuda" else None
    try:
        fn = compiled(backend_function(item.source, item.backend), item)
    except BackendUnavailable as exc:
        progress(f"{label}: skipped ({exc})")
        return _item_record(item, "skipped", str(exc))
    started, compile_s, stop_reason, statuses = time.monotonic(), 0.0, None, []
    counters_before = _compile_counters()
    cudagraphs = uses_cudagraphs(item, device)
    for tokens in ctx.config.tokens:
        if stop_reason is None and time.monotonic() > deadline:
            stop_reason = "time budget spent"
        if stop_reason:
            recorder.add_point(skipped_point(item, shape, tokens, stop_reason))
            continue
        point = measure_point(ctx, item, shape, module, fn, tokens, cudagraphs)
        recorder.add_point(point)
        statuses.append(point["status"])
        progress(f"{label} T={tokens}: {_describe(point)}")
        if point["status"] == "ok":
            compile_s += max(0.0, point["first_call_s"] - point["median_s"])
            if point["median_s"] > ctx.config.max_call_s:
                stop_reason = (f"T={tokens} took {point['median_s']:.2f} s per call, over the "
                               f"{ctx.config.max_call_s:.2f} s per-call limit")
        elif point["status"] == "oom" or statuses[-2:] == ["error", "error"]:
            stop_reason = f"stopped after {point['status']} at T={tokens}"
    record = _item_record(item, "done" if statuses and set(statuses) == {"ok"} else "partial", stop_reason)
    record.update(duration_s=round(time.monotonic() - started, 2), compile_s=round(compile_s, 2),
                  loadavg_before=before, loadavg_after=loadavg())
    if item.mode != "uncompiled":
        after = _compile_counters()
        record["compile_counters"] = {key: after[key] - counters_before[key] for key in after}
    if device == "cuda":
        # Memory the item kept after its calls: CUDA graph pools, compiled kernels' workspaces, cached outputs.
        record["retained_bytes"] = torch.cuda.memory_allocated() - allocated_before
    del fn
    return record


def _compile_counters() -> dict[str, int]:
    """torch._dynamo's running counts: graphs compiled, graph breaks, CUDA-graph skips (0 skips in a CUDA-graph
    mode means every compiled graph ran as a CUDA graph; TORCH_LOGS=perf_hints prints the reasons of skips)."""
    from torch._dynamo.utils import counters

    return {"unique_graphs": int(counters["stats"]["unique_graphs"]),
            "graph_breaks": int(sum(counters["graph_break"].values())),
            "cudagraph_skips": int(counters["inductor"]["cudagraph_skips"])}


def _item_record(item: Item, status: str, reason: str | None) -> dict:
    return {"shape": item.shape, "dtype": item.dtype, "source": item.source, "backend": item.backend,
            "mode": item.mode, "status": status,
            "reason": reason}


def _reset(device: str) -> None:
    """Forget compiled code and CUDA graphs of the previous item and free what it left."""
    torch._dynamo.reset()
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def _default_memory_limit(device: str) -> int:
    """70 % of the free GPU memory, or a quarter of the available RAM capped at 2 GiB on CPU."""
    if device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return int(0.7 * free)
    available = 8 * 2**30
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(min(2 * 2**30, available / 4))


def _describe(point: dict) -> str:
    if point["status"] != "ok":
        return f"{point['status']}: {point.get('reason')}"
    text = (f"median {point['median_s'] * 1e3:.3f} ms, p90 {point['p90_s'] * 1e3:.3f} ms (n={point['reps']}), "
            f"first call {point['first_call_s']:.2f} s, peak {point['peak_bytes'] / 2**20:.1f} MiB")
    if "roofline_fraction" in point:
        text += f", roofline {100 * point['roofline_fraction']:.0f}%"
    return text
