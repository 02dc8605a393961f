"""Describe the environment a run happened in: versions, device, compute capability, harness commit; CPU use
between two samples (`harness speed`)."""

from __future__ import annotations

import glob
import importlib.metadata
import os
import platform
import subprocess
import sys
from typing import Any

from harness.portable import CHECKOUT, portable_path

_REPO_ROOT = CHECKOUT


# Device nodes of every GPU that torch.cuda can drive on Linux: NVIDIA, ROCm (/dev/kfd), WSL (/dev/dxg).
_GPU_DEVICE_NODES = ("/dev/nvidia[0-9]*", "/dev/kfd", "/dev/dxg")


def gpu_impossible() -> bool:
    """True when this is Linux with no GPU device node at all, so torch.cuda cannot be available.

    Lets the controller skip importing torch (~2.5 s of a core that the executors need) on CPU-only machines.
    """
    return sys.platform.startswith("linux") and not any(glob.glob(pattern) for pattern in _GPU_DEVICE_NODES)


def torch_version() -> str:
    """torch's version string, from its installed metadata where that is enough (no import)."""
    if gpu_impossible():
        version = _version("torch")
        if version is not None:
            return version
    import torch

    return torch.__version__


def collect(devices: tuple[str, ...] = ("cpu", "cuda")) -> dict[str, Any]:
    """The `environment` block of results.json."""
    from harness.environment import transformers_src

    tf = transformers_src.describe()  # the installed package, or the --transformers-src tree
    available = cuda_available()
    env: dict[str, Any] = {
        "torch": torch_version(),
        "transformers": tf["version"] or _version("transformers"),
        "transformers_path": portable_path(tf["path"]) if tf["path"] else None,
        "transformers_git_commit": tf["git_commit"],
        "transformers_from_src": tf["from_src"],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "harness_git_sha": _git_sha(),
        "cuda_available": available,
    }
    if "cuda" in devices and available:
        import torch

        props = torch.cuda.get_device_properties(0)
        env.update({
            "device_name": props.name,
            "compute_capability": f"{props.major}.{props.minor}",
            "cuda": torch.version.cuda,
            "gpu_count": torch.cuda.device_count(),
            "driver": _nvidia_driver(),
        })
    else:
        env.update({"device_name": _cpu_name(), "compute_capability": None})
    return env


def cuda_available() -> bool:
    """True when torch sees a CUDA device."""
    if gpu_impossible():
        return False
    import torch

    return torch.cuda.is_available()


def cuda_capability() -> tuple[int, int] | None:
    """Compute capability of CUDA device 0, or None without one."""
    if gpu_impossible():
        return None
    import torch

    return tuple(torch.cuda.get_device_capability(0)) if torch.cuda.is_available() else None


def parse_capability(text: str) -> tuple[int, int] | None:
    """`none` -> None, `9.0` -> (9, 0): how the CLI hands the capability to pytest workers."""
    if text == "none":
        return None
    try:
        major, minor = (int(part) for part in text.split("."))
    except ValueError:
        raise ValueError(f"expected none or MAJOR.MINOR, got {text!r}") from None
    return major, minor


def format_capability(capability: tuple[int, int] | None) -> str:
    """The inverse of parse_capability."""
    return "none" if capability is None else f"{capability[0]}.{capability[1]}"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_sha() -> str | None:
    """HARNESS_GIT_SHA when set (copies of a tree, whose .git may be stale or absent), else the checkout's commit."""
    if os.environ.get("HARNESS_GIT_SHA"):
        return os.environ["HARNESS_GIT_SHA"]
    try:
        out = subprocess.run(["git", "-C", _REPO_ROOT, "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False)
        if out.returncode != 0:
            return os.environ.get("HARNESS_GIT_SHA")
        dirty = subprocess.run(["git", "-C", _REPO_ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("HARNESS_GIT_SHA")


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=False)
        return out.stdout.strip().splitlines()[0] if out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or sys.platform


def cpu_use(before: tuple[int, int] | None, after: tuple[int, int] | None) -> dict[str, float] | None:
    """{busy: fraction of all cores' time in use, idle_core_s: core-seconds left idle} between two samples.

    Machine-wide (other load counts as busy: run the benchmark on an idle machine); None without /proc/stat.
    """
    if before is None or after is None or after[0] <= before[0]:
        return None
    total, idle = after[0] - before[0], after[1] - before[1]
    return {"busy": round(1 - idle / total, 3), "idle_core_s": round(idle / os.sysconf("SC_CLK_TCK"), 1)}


def cpu_ticks() -> tuple[int, int] | None:
    """(all, idle + iowait) clock ticks summed over cores since boot, from /proc/stat's first line."""
    try:
        with open("/proc/stat") as fh:
            ticks = [int(value) for value in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(ticks), ticks[3] + ticks[4]
