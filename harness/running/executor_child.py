"""Entry point of the executor process: read cell specs as JSON lines, answer outcomes as JSON lines."""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    """Spawned executor: prepare this process, then serve cells until stdin closes."""
    from harness.running.warmup import prepare

    try:
        prepare()
    except Exception:  # noqa: BLE001 - the warm-up only saves time: its failure must not cost the first cell
        import traceback

        traceback.print_exc()  # the executor log keeps why; the first cell then pays the set-up itself
        print("[harness] warm-up failed (traceback above); serving without it", file=sys.stderr, flush=True)
    serve(os.getppid())


def serve(parent_pid: int) -> None:
    """Serve cells until stdin closes; the protocol uses a private copy of stdout, prints go to the log."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a backend or torch prints ends up in the executor log, not in the protocol
    sys.stdout = sys.stderr
    from harness.running import isolation
    from harness.measure.cell_run import run_cell
    from harness.measure.signals import error_record

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
