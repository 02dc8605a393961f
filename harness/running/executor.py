"""A long-lived child process that runs cells one at a time, so a crash or hang costs one cell, not the run.

The parent talks to it with JSON lines over pipes. The child is started in its own process group, so a
timeout kills it with everything it spawned (inductor compile workers included), and it is replaced on the
next cell. A cell that leaves threads or processes behind also gets the child replaced.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any

from harness.running import forkserver

from harness.environment import transformers_src
from harness.portable import CHECKOUT

_READY_TIMEOUT_S = 300
_REPO_ROOT = CHECKOUT


class Executor:
    """Parent-side handle: `run(spec, time_limit)` returns an outcome dict, whatever happens in the child."""

    def __init__(self, log_dir: str, name: str, threads: int | None = None, memory_limit_gb: float | None = None):
        self.log_dir, self.name, self.threads = log_dir, name, threads
        self.memory_limit_gb = memory_limit_gb
        self._proc: subprocess.Popen | forkserver.ForkedExecutor | None = None
        self._log_path = ""
        self._starts = 0
        self._ready = False

    def run(self, spec: dict[str, Any], time_limit_s: float) -> dict[str, Any]:
        """Run one cell in the child and return {status, error, signals}; crash/timeout become statuses."""
        try:
            self._ensure_started()
        except _ChildFailed as exc:
            return _failure("crash", "ExecutorStartFailed", str(exc))
        log_offset = os.path.getsize(self._log_path)
        self._send(spec)
        started = time.monotonic()
        line = self._read_line(time_limit_s)
        if line is None:
            elapsed = time.monotonic() - started
            self.close()
            return _failure("timeout", "Timeout", f"no result after {elapsed:.0f}s (time limit {time_limit_s:g}s); "
                                                  "the cell's process group was killed")
        if line == b"":
            code = self._proc.wait(timeout=30)
            fatal, frames = crash_report(self._log_path, log_offset)
            self._proc = None
            outcome = _failure("crash", "Crash", f"executor died: {_describe_exit(code)}" + (f"; {fatal}" if fatal else ""))
            if frames:
                outcome["error"]["detail"] = "\n".join(frames)
            return outcome
        outcome = json.loads(line)
        if outcome.pop("recycle", None):
            self.close()
        return outcome

    def close(self) -> None:
        """Kill the child and its process group (idempotent)."""
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._proc = None

    def prestart(self) -> None:
        """Start the child now without waiting for it (its imports overlap the caller's own start-up)."""
        if self._proc is None or self._proc.poll() is not None:
            self._spawn()

    def _ensure_started(self) -> None:
        self.prestart()
        if self._ready:
            return
        line = self._read_line(_READY_TIMEOUT_S)
        if not line or json.loads(line).get("ready") is not True:
            self.close()
            raise _ChildFailed(f"executor did not start; see {self._log_path}: "
                               f"{crash_report(self._log_path, 0)[0]}")
        self._ready = True

    def _spawn(self) -> None:
        self._ready = False
        self._starts += 1
        os.makedirs(self.log_dir, exist_ok=True)
        self._log_path = os.path.join(self.log_dir, f"executor-{self.name}-{self._starts}.log")
        env = executor_env(self.threads)
        with open(self._log_path, "ab") as log:
            server = os.environ.get(forkserver.ENV_VAR)
            if server and server != "0":
                self._proc, refused = forkserver.fork_executor(server, log=log, threads=self.threads,
                                                               memory_limit_gb=self.memory_limit_gb, env=env)
                if self._proc is not None:
                    return
                log.write(f"[harness] spawning instead of forking: {refused}\n".encode())
                log.flush()
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "harness.running.executor_child"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log, env=env, start_new_session=True, cwd=os.getcwd(),
                preexec_fn=_address_space_cap(self.memory_limit_gb))

    def _send(self, spec: dict[str, Any]) -> None:
        self._proc.stdin.write(json.dumps(spec).encode() + b"\n")
        self._proc.stdin.flush()

    def _read_line(self, timeout_s: float) -> bytes | None:
        """One protocol line; b'' when the child died, None on timeout."""
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        buffer = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b""
            buffer += chunk
            if buffer.endswith(b"\n"):
                return buffer


def executor_env(threads: int | None) -> dict[str, str]:
    """The environment of an executor process (and of the fork server, which must match it)."""
    env = dict(os.environ)
    # --transformers-src: that tree first, so `import transformers` finds it before the installed package.
    src = env.get(transformers_src.ENV_VAR)
    paths = [src, _REPO_ROOT, *env.get("PYTHONPATH", "").split(os.pathsep)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path for path in paths if path))  # once each, in order
    env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # no compile-worker pool per executor
    env["PYTHONFAULTHANDLER"] = "1"  # a segfault prints a Python traceback into the log
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _address_space_cap(limit_gb: float | None):
    """A preexec function capping the child's address space, so a runaway cell fails alone instead of the host."""
    if not limit_gb:
        return None
    limit = int(limit_gb * (1 << 30))

    def cap() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return cap


class _ChildFailed(Exception):
    pass


def _failure(status: str, kind: str, message: str) -> dict[str, Any]:
    return {"status": status, "error": {"type": kind, "message": message, "phase": "executor"}, "signals": {}}


def _describe_exit(code: int | None) -> str:
    if code == forkserver.UNKNOWN_EXIT:
        return "exit status unknown (the fork server that started it is gone)"
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


_FATAL_PREFIXES = ("Fatal Python error", "terminate called", "Killed")


def crash_report(log_path: str, offset: int) -> tuple[str, list[str]]:
    """What the child wrote after `offset` when it died: (one line: the fatal error and the innermost frame of the
    thread that crashed, the crashing thread's frames, innermost first).

    faulthandler (PYTHONFAULTHANDLER=1) prints every thread, newest first, so the first frame of the log is
    usually a harness thread (the parent watchdog, sleeping); the crash is in the block headed `Current thread`.
    """
    try:
        with open(log_path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return "", []
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith(_FATAL_PREFIXES) or "Error" in line.split(":")[0]]
    frames = _crashing_thread(lines)
    if frames:
        where = frames[0]
        if _in_stdlib(where):  # e.g. ctypes.string_at: name the code that called into it too
            caller = next((frame for frame in frames if frame.startswith('File "') and not _in_stdlib(frame)), None)
            where += f" (called from {caller})" if caller else ""
        picked = fatal[:1] + [where]
    else:
        picked = (fatal[:1] + [line for line in lines if line.startswith('File "')][:1]) or lines[-2:]
    return " | ".join(picked)[:500], frames


def _in_stdlib(frame: str) -> bool:
    """Whether a faulthandler frame line is in Python's standard library (not site-packages)."""
    import sysconfig

    path = frame[len('File "'):].split('"', 1)[0] if frame.startswith('File "') else ""
    stdlib = sysconfig.get_paths()["stdlib"]
    return (path.startswith(stdlib + os.sep) and "-packages" not in path) or path.startswith("<frozen")


def _crashing_thread(lines: list[str]) -> list[str]:
    """The frames of faulthandler's block for the crashing thread (`Current thread 0x...` when several threads
    ran, `Stack` when one did), innermost first; [] when the log has no such block."""
    blocks: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.endswith("(most recent call first):"):
            blocks.append((line, []))
        elif blocks and (line.startswith('File "') or line == "<no Python frame>"):
            blocks[-1][1].append(line)
        elif blocks and blocks[-1][1]:  # the block ended (e.g. "Extension modules: ...")
            blocks.append(("", []))
    crashing = [frames for header, frames in blocks if header.startswith(("Current thread", "Stack"))]
    return crashing[0][:20] if crashing else []
