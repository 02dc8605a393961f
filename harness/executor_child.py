"""Entry point of the executor process: read cell specs as JSON lines, answer outcomes as JSON lines."""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    """Spawned executor: prepare this process, then serve cells until stdin closes."""
    prepare()
    serve(os.getppid())


def prepare() -> None:
    """Import and exercise torch.compile once: lazily started threads and one-time set-up are not the first cell's.

    The fork server (harness/forkserver.py) runs this once and forks ready executors from it.
    """
    import torch

    from harness.signals import enable_logs

    import backends.reference  # noqa: F401 - registers the reference custom ops before the baseline snapshot

    import harness.cell_run  # noqa: F401 - what serve() needs, imported once in the fork server
    import harness.isolation  # noqa: F401

    # A C++ kernel: inductor's one-time C++ set-up (CPU ISA probe, precompiled header on a cold cache).
    torch.compile(lambda x: torch.nn.functional.silu(x) * 2.0)(torch.randn(4, 4))
    # Two sizes: the automatic-dynamic recompile every cell makes (symbolic shapes' one-time set-up), on a
    # graph of extern calls only, so a cold cache builds no C++ kernel that no cell needs (measured: the first
    # cell's compile time is the same as after a dynamic C++ kernel).
    # Not the profiler: it starts a thread, and the fork server forks only single-threaded.
    extern_only = torch.compile(lambda x, w: torch.mm(x, w))
    weight = torch.randn(4, 4)
    extern_only(torch.randn(4, 4), weight)
    extern_only(torch.randn(5, 4), weight)
    torch._dynamo.reset()
    enable_logs()


def serve(parent_pid: int) -> None:
    """Serve cells until stdin closes; the protocol uses a private copy of stdout, prints go to the log."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a backend or torch prints ends up in the executor log, not in the protocol
    sys.stdout = sys.stderr
    from harness import isolation
    from harness.cell_run import run_cell
    from harness.signals import error_record

    _exit_with_parent(parent_pid)
    baseline = isolation.snapshot()
    protocol.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    for line in sys.stdin:
        spec = json.loads(line)
        try:
            outcome = run_cell(spec)
        except Exception as exc:  # noqa: BLE001 - a harness bug must cost one cell, not the executor
            outcome = {"status": "crash", "signals": {},
                       "error": {**error_record(exc, "harness"), "type": f"HarnessInternalError: {type(exc).__name__}"}}
        leaked = isolation.restore(baseline)
        stuck = isolation.unrecoverable(baseline)
        if leaked or stuck:
            outcome.setdefault("signals", {})["leaked_state"] = leaked + stuck
        outcome["recycle"] = bool(stuck)
        protocol.write(json.dumps(outcome, default=str) + "\n")


def _exit_with_parent(parent_pid: int) -> None:
    """Exit when the worker that runs us dies (e.g. killed mid-cell), so no executor outlives its run."""
    import threading
    import time

    def alive() -> bool:
        if parent_pid == os.getppid():  # spawned by the worker: reparented the moment the worker dies
            return True
        try:  # forked by the fork server: watch the worker that asked for us; a zombie is dead too
            with open(f"/proc/{parent_pid}/stat") as fh:
                return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False

    def watch() -> None:
        while alive():
            time.sleep(1.0)
        os._exit(3)

    threading.Thread(target=watch, name="harness-parent-watchdog", daemon=True).start()


if __name__ == "__main__":
    main()
