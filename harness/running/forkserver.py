"""A fork server for executors: torch is imported and torch.compile warmed up once, executors are forked ready.

Without it every xdist worker's executor (and every replacement after a crash or timeout) spends ~8 s
importing torch, dynamo and inductor and compiling a warm-up function before its first cell. `harness run`
starts this server first thing, so that start-up overlaps the CLI's own; workers ask it for an executor over
a Unix socket, passing the pipes and the log file the executor must use (SCM_RIGHTS). This module is the
client side and start/stop; the server process is harness/running/forkserver_main.py.

The executor is still a process of its own (a crash or hang costs one cell): forked from a process that has
only imported modules and compiled one function, that is single-threaded, and that never touched CUDA. The
server checks those conditions before every fork and refuses otherwise, as it refuses when the worker's
environment differs from its own in anything torch reads at import; the worker then spawns its executor the
usual way (executor.py), so the fork server only ever changes how fast an executor starts.

Protocol, one connection per executor: the worker sends one JSON line (cwd, threads, memory cap, worker pid,
environment) with three file descriptors (stdin, stdout, stderr of the executor); the server answers
{"pid": N} or {"refused": reason}, and later {"exit": code} (code as in subprocess: -N for signal N).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

ENV_VAR = "HARNESS_FORKSERVER"  # socket path, inherited by xdist workers; "0" disables the fork server
# Environment variables read at import time by torch and friends: a worker whose values differ gets a spawned executor.
_IMPORT_TIME_PREFIXES = ("TORCH", "PYTHON", "CUDA", "TRITON", "LD_", "HARNESS_TRANSFORMERS", "MKL", "KMP", "HF_")
_IGNORED = ("PYTHONFAULTHANDLER",)
_CONNECT_TIMEOUT_S = 300
UNKNOWN_EXIT = 256  # exit code of an executor that died after its fork server: no real code is >= 256
FORKED_LOG_LINE = "forked by the fork server"  # first line of a forked executor's log


def start(env: dict[str, str], log_path: str) -> tuple[subprocess.Popen, str] | None:
    """Start the server; None where forking executors is not possible.

    The socket is bound and listening before this returns, so a worker can connect at once: it waits in
    the backlog until the server has imported torch and warmed up.
    """
    if os.environ.get(ENV_VAR) == "0" or sys.platform != "linux" or not hasattr(socket, "send_fds"):
        return None
    import tempfile

    path = os.path.join(tempfile.mkdtemp(prefix="harness-forkserver-"), "socket")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    server_env = {**env, "OMP_NUM_THREADS": "1",  # no OpenMP pool in the parent; each executor sets its own
                  # torch.cuda.is_available() through NVML, not cudaGetDeviceCount: the latter starts the CUDA
                  # driver (and its threads) in the server, after which no child could use CUDA.
                  "PYTORCH_NVML_BASED_CUDA_CHECK": "1"}
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    try:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "harness.running.forkserver_main", str(listener.fileno())],
                                    env=server_env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True, pass_fds=[listener.fileno()])
    finally:
        listener.close()
    return proc, path


def stop(server: tuple[subprocess.Popen, str] | None) -> None:
    """Stop the server and remove its socket (executors it forked belong to their workers and are not touched)."""
    if server is None:
        return
    proc, path = server
    proc.kill()  # it holds nothing to flush; a clean interpreter exit with torch loaded takes a second
    proc.wait()
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def comparable_env(env: dict[str, str]) -> dict[str, str]:
    """The part of an environment that must match the server's for a forked executor to equal a spawned one."""
    return {k: v for k, v in env.items() if k.startswith(_IMPORT_TIME_PREFIXES) and k not in _IGNORED}


class ForkedExecutor:
    """The Popen-like handle executor.py uses for a forked executor: pid, stdin, stdout, poll(), wait()."""

    def __init__(self, conn: socket.socket, pid: int, stdin, stdout, pending: bytes = b""):
        self._conn, self.pid, self.stdin, self.stdout = conn, pid, stdin, stdout
        self._pending = pending  # bytes the server sent after the pid line (an early exit notice)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit code if the executor has exited, else None."""
        return self.wait(0.0, raise_timeout=False)

    def wait(self, timeout: float | None = None, raise_timeout: bool = True) -> int | None:
        """Wait for the server's exit notice; subprocess.TimeoutExpired after `timeout` seconds."""
        if self.returncode is not None:
            return self.returncode
        self._conn.settimeout(timeout)
        try:
            data = self._pending or self._conn.recv(4096)
        except (TimeoutError, BlockingIOError):
            if raise_timeout:
                raise subprocess.TimeoutExpired(f"forked executor {self.pid}", timeout) from None
            return None
        except OSError:
            data = b""
        if data:
            self.returncode = json.loads(data.decode().splitlines()[0])["exit"]
        else:  # the server is gone: the executor cannot be waited for, only looked at
            self.returncode = None if _pid_alive(self.pid) else UNKNOWN_EXIT
        if self.returncode is not None:
            self._conn.close()
        return self.returncode


def fork_executor(path: str, *, log, threads: int | None, memory_limit_gb: float | None,
                  env: dict[str, str]) -> tuple[ForkedExecutor | None, str]:
    """Ask the server at `path` for an executor; (handle, "") or (None, why it was not forked)."""
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(_CONNECT_TIMEOUT_S)
        conn.connect(path)
        request = {"cwd": os.getcwd(), "threads": threads, "memory_limit_gb": memory_limit_gb,
                   "parent": os.getpid(), "env": env}
        socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], [stdin_r, stdout_w, log.fileno()])
        line, pending = recv_line(conn)
        reply = json.loads(line)
    except (OSError, ValueError) as exc:
        conn.close()
        reply = {"refused": f"fork server unavailable: {exc}"}
    finally:
        os.close(stdin_r)
        os.close(stdout_w)
    if "pid" not in reply:
        conn.close()
        os.close(stdin_w)
        os.close(stdout_r)
        return None, reply.get("refused", "no pid")
    return ForkedExecutor(conn, reply["pid"], os.fdopen(stdin_w, "wb"), os.fdopen(stdout_r, "rb"), pending), ""


def recv_line(conn: socket.socket, data: bytes = b"") -> tuple[bytes, bytes]:
    """(first line, whatever came after it)."""
    while b"\n" not in data:
        chunk = conn.recv(1 << 16)
        if not chunk:
            raise ValueError("connection closed")
        data += chunk
    line, _, rest = data.partition(b"\n")
    return line, rest


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
