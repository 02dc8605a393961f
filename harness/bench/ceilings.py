"""The device's ceilings for the roofline: copy bandwidth and dense matmul rate per dtype."""

from __future__ import annotations

import time

import torch

from harness.bench.timing import synchronize

# Sizes: large enough to reach the ceiling on an H100, small enough for 2 shared CPU cores.
_COPY_BYTES = {"cuda": 2**30, "cpu": 2**27}
_MATMUL_N = {"cuda": 8192, "cpu": 512}
_REPS = {"cuda": 10, "cpu": 3}


def measure_ceilings(device: str, dtypes: tuple[str, ...]) -> dict:
    """Copy bandwidth (bytes read + written per second) and matmul FLOP/s for each dtype, with their method."""
    copy_bytes = _COPY_BYTES[device]
    src = torch.empty(copy_bytes // 2, dtype=torch.bfloat16, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    copy_s = _best_seconds(lambda: dst.copy_(src), device)
    n = _MATMUL_N[device]
    matmul = {}
    for name in dtypes:
        dtype = getattr(torch, name)
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        matmul[name] = 2 * n**3 / _best_seconds(lambda: torch.mm(a, b), device)
    return {
        "copy_bytes_per_s": 2 * copy_bytes / copy_s,
        "matmul_flops_per_s": matmul,
        "method": (f"copy: {copy_bytes / 2**20:.0f} MiB device-to-device, bytes read + written / time; matmul: "
                   f"{n}x{n}x{n} torch.mm on random data, 2*n^3 / time; each the best of {_REPS[device]} "
                   f"after warm-up"),
    }


def _best_seconds(fn, device: str) -> float:
    """Fastest of a few timed calls after two warm-ups."""
    for _ in range(2):
        fn()
    best = float("inf")
    for _ in range(_REPS[device]):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best
