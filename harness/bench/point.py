"""One benchmark point: a function at one token count, warmed up, timed over rotated inputs, memory measured."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from harness.bench.config import BenchConfig, BenchShape, Item
from harness.bench.inputs import experts_hit, make_inputs
from harness.bench.timing import cuda_peak_bytes, profile_call, summarize, synchronize, time_calls
from harness.measure.signals import grouped_mm_path


@dataclass
class PointContext:
    """What every point of a run shares: configuration, cache flush, ceilings, memory limit, reference outputs."""

    config: BenchConfig
    flush: Callable[[], None]
    ceilings: dict | None
    memory_limit_bytes: int
    reference: Callable  # (shape, dtype, tokens, inputs) -> reference output for the first input set


def point_base(item: Item, shape: BenchShape, tokens: int) -> dict:
    """The fields that identify a point and its work, common to every status."""
    return {"shape": item.shape, "dtype": item.dtype, "source": item.source, "backend": item.backend,
            "mode": item.mode, "tokens": tokens, "flops": shape.flops(tokens)}


def skipped_point(item: Item, shape: BenchShape, tokens: int, reason: str) -> dict:
    """A point that was not run, and why."""
    return {**point_base(item, shape, tokens), "status": "skipped", "reason": reason}


def measure_point(ctx: PointContext, item: Item, shape: BenchShape, module, fn: Callable, tokens: int,
                  cudagraphs: bool) -> dict:
    """Measure `fn(module, ...)` at `tokens` tokens; the record carries status ok, skipped, oom or error."""
    device = ctx.config.device
    dtype = getattr(torch, item.dtype)
    element_size = torch.empty((), dtype=dtype).element_size()
    point = point_base(item, shape, tokens)
    if item.backend == "batched_mm":
        predicted = shape.batched_gather_bytes(tokens, element_size)
        point["predicted_gather_bytes"] = predicted
        if predicted > ctx.memory_limit_bytes:
            return {**point, "status": "skipped",
                    "reason": f"batched_mm would gather {predicted / 2**30:.1f} GiB of expert weights, over the "
                              f"memory limit of {ctx.memory_limit_bytes / 2**30:.1f} GiB"}
    try:
        with torch.no_grad():
            point.update(_measure(ctx, item, shape, module, fn, tokens, cudagraphs, dtype, element_size))
        point["status"] = "ok"
    except torch.OutOfMemoryError as exc:
        point.update(status="oom", reason=_first_line(exc))
    except Exception as exc:  # noqa: BLE001 - a failing backend is a result, not a crash of the run
        point.update(status="error", reason=f"{type(exc).__name__}: {_first_line(exc)}")
    finally:
        if device == "cuda":
            torch.cuda.empty_cache()
    return point


def _measure(ctx, item, shape, module, fn, tokens, cudagraphs, dtype, element_size) -> dict:
    config, device = ctx.config, ctx.config.device
    inputs = make_inputs(shape, tokens, dtype, device, config.seed, config.input_sets)
    step = torch.compiler.cudagraph_mark_step_begin if cudagraphs else None

    def call(index: int):
        if step:
            step()
        return fn(module, *inputs[index % len(inputs)])

    start = time.perf_counter()
    call(1)
    synchronize(device)
    first_call_s = time.perf_counter() - start
    # Compiled functions need a few calls to settle (CUDA graph trees: warm-up, record, replay).
    warmups = 3 if item.mode != "uncompiled" else 1
    for index in range(2, 2 + warmups - 1):
        call(index)
    synchronize(device)
    start = time.perf_counter()
    out = call(0).clone()  # clone: a CUDA graph replay overwrites its output buffer
    synchronize(device)
    estimate_s = max(time.perf_counter() - start, 1e-6)
    rel_error = _relative_error(out, ctx.reference(shape, item.dtype, tokens, inputs[0]))
    del out
    # Calls over the per-call limit are the item's last (see bench_run); 3 timed calls are enough for them.
    min_reps = 3 if estimate_s > config.max_call_s else config.min_reps
    reps = min(config.max_reps, max(min(min_reps, config.max_reps), math.ceil(config.target_s / estimate_s)))
    samples = time_calls(call, reps, device, ctx.flush)
    names, peak_bytes = profile_call(lambda: call(0), device)
    if device == "cuda":
        peak_bytes = cuda_peak_bytes(lambda: call(0))
    result = {"reps": reps, "first_call_s": first_call_s, **summarize(samples), "max_rel_error": rel_error,
              "peak_bytes": peak_bytes, "grouped_mm_path": grouped_mm_path(names)}
    if cudagraphs:
        result["cudagraph_launches"] = sum("cudaGraphLaunch" in name for name in names)
    weight_bytes = experts_hit(inputs) * shape.expert_params() * element_size
    result.update(_roofline(ctx.ceilings, item.dtype, weight_bytes, shape.flops(tokens), result["median_s"]))
    return result


def _roofline(ceilings, dtype: str, weight_bytes: float, flops: int, seconds: float) -> dict:
    """Achieved rates, and the fraction of the roofline time max(bytes / bandwidth, FLOPs / peak) reached."""
    doc = {"weight_bytes": weight_bytes, "bytes_per_s": weight_bytes / seconds, "flops_per_s": flops / seconds}
    if not ceilings or dtype not in ceilings["matmul_flops_per_s"]:
        return doc
    bandwidth, peak = ceilings["copy_bytes_per_s"], ceilings["matmul_flops_per_s"][dtype]
    roofline_s = max(weight_bytes / bandwidth, flops / peak)
    doc.update(bandwidth_fraction=doc["bytes_per_s"] / bandwidth, compute_fraction=doc["flops_per_s"] / peak,
               roofline_fraction=roofline_s / seconds, bound="memory" if weight_bytes / bandwidth > flops / peak
               else "compute")
    return doc


def _relative_error(out: torch.Tensor, reference: torch.Tensor) -> float:
    """max |out - reference| / max |reference| in float32."""
    ref = reference.float()
    return float((out.float() - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "")[:400]
