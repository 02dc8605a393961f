"""Global torch state a cell may change: snapshot it, restore it, and detect what could not be restored."""

from __future__ import annotations

import os
import threading
from typing import Any


def snapshot() -> dict[str, Any]:
    """Capture the process-wide state a cell could leak into the next one."""
    import torch

    return {
        "default_dtype": torch.get_default_dtype(),
        "grad_enabled": torch.is_grad_enabled(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "num_threads": torch.get_num_threads(),
        "rng_state": torch.get_rng_state(),
        "dynamo_config": torch._dynamo.config.save_config(),
        "inductor_config": torch._inductor.config.save_config(),
        "threads": {t.ident for t in threading.enumerate()},
        "children": _child_pids(),
        "cwd": os.getcwd(),
    }


def restore(snap: dict[str, Any]) -> list[str]:
    """Put the state back as snapshotted; return what had leaked and what cannot be undone in-process."""
    import torch

    leaked = []
    if torch.get_default_dtype() != snap["default_dtype"]:
        leaked.append(f"default dtype {torch.get_default_dtype()}")
        torch.set_default_dtype(snap["default_dtype"])
    if torch.is_grad_enabled() != snap["grad_enabled"]:
        leaked.append(f"grad mode {torch.is_grad_enabled()}")
        torch.set_grad_enabled(snap["grad_enabled"])
    if (torch.are_deterministic_algorithms_enabled() != snap["deterministic"]
            or torch.is_deterministic_algorithms_warn_only_enabled() != snap["deterministic_warn_only"]):
        leaked.append("deterministic algorithms")
        torch.use_deterministic_algorithms(snap["deterministic"], warn_only=snap["deterministic_warn_only"])
    if torch.get_num_threads() != snap["num_threads"]:
        leaked.append(f"num_threads {torch.get_num_threads()}")
        torch.set_num_threads(snap["num_threads"])
    if torch._dynamo.config.save_config() != snap["dynamo_config"]:
        leaked.append("torch._dynamo.config")
        torch._dynamo.config.load_config(snap["dynamo_config"])
    if torch._inductor.config.save_config() != snap["inductor_config"]:
        leaked.append("torch._inductor.config")
        torch._inductor.config.load_config(snap["inductor_config"])
    if os.getcwd() != snap["cwd"]:
        leaked.append("working directory")
        os.chdir(snap["cwd"])
    torch.set_rng_state(snap["rng_state"])
    torch._dynamo.reset()
    return leaked


# Library threads that start lazily, live for the whole process and hold no state a cell could see:
# replacing the executor for them would only cost time (tqdm's monitor starts with inductor's autotune bars).
BENIGN_THREADS = ("tqdm_monitor",)


def unrecoverable(snap: dict[str, Any]) -> list[str]:
    """Leaks that need a fresh process: threads or child processes the cell left behind."""
    extra_threads = [t.name for t in threading.enumerate()
                     if t.ident not in snap["threads"] and t.is_alive() and t.name not in BENIGN_THREADS]
    extra_children = sorted(_child_pids() - snap["children"])
    problems = []
    if extra_threads:
        problems.append(f"threads left running: {', '.join(sorted(extra_threads))}")
    if extra_children:
        problems.append(f"child processes left running: {extra_children}")
    return problems


def _child_pids() -> set[int]:
    """Direct children of this process (Linux /proc); empty where /proc is unavailable."""
    pid = os.getpid()
    children: set[int] = set()
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                children.update(int(p) for p in fh.read().split())
    except OSError:
        pass
    return children
