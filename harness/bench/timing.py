"""Timing and peak-memory measurement of one call, on CPU (perf_counter, profiler) and CUDA (events, allocator)."""

from __future__ import annotations

import os
import time
from typing import Callable

import torch

# CPU peak memory: the CPU allocator keeps no peak statistics, so one call runs under torch.profiler with
# profile_memory=True and the allocator's alloc (+bytes) / free (-bytes) records are summed in time order; the
# running maximum is the peak of bytes allocated during the call (the output included, weights and inputs not).
# It sees every allocation through c10's CPU allocator (eager ops and inductor's buffers alike), not memory that
# libraries allocate on their own (e.g. oneDNN scratch pads).
CPU_MEMORY_METHOD = "torch.profiler profile_memory: running sum of allocator records during one call"
CUDA_MEMORY_METHOD = "torch.cuda.max_memory_allocated() - memory_allocated() before one call"


def loadavg() -> list[float] | None:
    """os.getloadavg() as a list, or None where the platform has none."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def synchronize(device: str) -> None:
    """Wait for queued work on the device (no-op on CPU)."""
    if device == "cuda":
        torch.cuda.synchronize()


def cache_flusher(device: str) -> tuple[Callable[[], None], int]:
    """A function that evicts the last-level cache by writing a buffer a few times its size, and that size."""
    if device == "cuda":
        l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0) or 50 * 2**20
        size = max(2 * l2, 64 * 2**20)
    else:
        size = 4 * _cpu_llc_bytes()
    buffer = torch.empty(size // 4, dtype=torch.float32, device=device)

    def flush() -> None:
        buffer.zero_()

    return flush, size


def _cpu_llc_bytes() -> int:
    """Size of the largest CPU cache from sysfs; 32 MiB when unknown."""
    best = 0
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in os.listdir(base):
            with open(os.path.join(base, entry, "size")) as fh:
                text = fh.read().strip()
            scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
            best = max(best, int(text.rstrip("KMG")) * scale)
    except (OSError, ValueError):
        pass
    return best or 32 * 2**20


def time_calls(call: Callable[[int], object], reps: int, device: str, flush: Callable[[], None]) -> list[float]:
    """Seconds of `reps` calls `call(rep)`, each after a cache flush on an idle device (launch overhead counts)."""
    if device == "cuda":
        return _time_cuda(call, reps, flush)
    samples = []
    for rep in range(reps):
        flush()
        start = time.perf_counter()
        call(rep)
        samples.append(time.perf_counter() - start)
    return samples


def _time_cuda(call, reps, flush) -> list[float]:
    """CUDA events around each call; the device is synchronised before each, so CPU launch time is included."""
    pairs = []
    for rep in range(reps):
        flush()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call(rep)
        end.record()
        pairs.append((start, end))
    torch.cuda.synchronize()
    return [start.elapsed_time(end) / 1e3 for start, end in pairs]


def summarize(samples: list[float]) -> dict[str, float]:
    """median, p90 (linear interpolation), min and mean of the samples, in seconds."""
    ordered = sorted(samples)
    return {"median_s": _quantile(ordered, 0.5), "p90_s": _quantile(ordered, 0.9), "min_s": ordered[0],
            "mean_s": sum(ordered) / len(ordered)}


def _quantile(ordered: list[float], q: float) -> float:
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def cuda_peak_bytes(call: Callable[[], object]) -> int:
    """Peak bytes allocated on the GPU during one call beyond what was allocated before it (CUDA_MEMORY_METHOD)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = call()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return int(peak)


def profile_call(call: Callable[[], object], device: str) -> tuple[list[str], int | None]:
    """One call under torch.profiler: the names of its events, and on CPU its peak bytes (CPU_MEMORY_METHOD)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities, profile_memory=device == "cpu") as prof:
        out = call()
        synchronize(device)
    del out
    names = [event.name() for event in prof.profiler.kineto_results.events()]
    if device != "cpu":
        return names, None
    records = [event for event in prof.profiler.kineto_results.events() if event.name() == "[memory]"
               and event.device_type() == torch.autograd.DeviceType.CPU]
    running = peak = 0
    for event in sorted(records, key=lambda event: event.start_ns()):
        running += event.nbytes()
        peak = max(peak, running)
    return names, int(peak)
