"""A fork server for executors: torch is imported and torch.compile warmed up once, executors are forked ready.

Without it every xdist worker's executor (and every replacement after a crash or timeout) spends ~8 s
importing torch, dynamo and inductor and compiling a warm-up function before its first cell. `harness run`
starts this server first thing, so that start-up overlaps the CLI's own; workers ask it for an executor over
a Unix socket, passing the pipes and the log file the executor must use (SCM_RIGHTS).

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
import selectors
import signal
import socket
import subprocess
import sys
from typing import Any

ENV_VAR = "HARNESS_FORKSERVER"  # socket path, inherited by xdist workers; "0" disables the fork server
# Environment variables read at import time by torch and friends: a worker whose values differ gets a spawned executor.
_IMPORT_TIME_PREFIXES = ("TORCH", "PYTHON", "CUDA", "TRITON", "LD_", "HARNESS_TRANSFORMERS", "MKL", "KMP", "HF_")
_IGNORED = ("PYTHONFAULTHANDLER",)
_CONNECT_TIMEOUT_S = 300
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
    server_env = {**env, "OMP_NUM_THREADS": "1"}  # no OpenMP pool in the parent; each executor sets its own
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    try:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "harness.forkserver", str(listener.fileno())],
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
    for leftover in (path, os.path.dirname(path)):
        try:
            os.unlink(leftover) if leftover == path else os.rmdir(leftover)
        except OSError:
            pass


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
            self.returncode = None if _pid_alive(self.pid) else -signal.SIGKILL
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
        line, pending = _recv_line(conn)
        reply = json.loads(line)
    except (OSError, ValueError) as exc:
        conn.close()
        reply = {"refused": f"fork server unavailable: {exc}"}
    finally:
        os.close(stdin_r)
        os.close(stdout_w)
    if "pid" not in reply:
        os.close(stdin_w)
        os.close(stdout_r)
        return None, reply.get("refused", "no pid")
    return ForkedExecutor(conn, reply["pid"], os.fdopen(stdin_w, "wb"), os.fdopen(stdout_r, "rb"), pending), ""


def _recv_line(conn: socket.socket, data: bytes = b"") -> tuple[bytes, bytes]:
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


# ---- server side -------------------------------------------------------------------------------------------


class _Server:
    """Single-threaded: a selector over the listening socket and a SIGCHLD wake-up pipe."""

    def __init__(self, listener_fd: int):
        self.listener = socket.socket(fileno=listener_fd)  # bound and listening: see start()
        self.parent = os.getppid()
        self.env = comparable_env(dict(os.environ))
        self.children: dict[int, socket.socket] = {}
        self.unusable = ""

    def prepare(self) -> None:
        """Bring this process to the state a spawned executor reaches before its first cell."""
        try:
            from harness import executor_child

            executor_child.prepare()
            _stop_benign_threads()
        except Exception as exc:  # noqa: BLE001 - every request is then refused and workers spawn as usual
            self.unusable = f"fork server could not prepare: {type(exc).__name__}: {exc}"

    def serve(self) -> None:
        """Fork one executor per request until the parent (the CLI) exits or sends SIGTERM."""
        self.wakeup_r, self.wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_w, False)
        signal.set_wakeup_fd(self.wakeup_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.selector.register(self.wakeup_r, selectors.EVENT_READ)
        while os.getppid() == self.parent:
            for key, _ in self.selector.select(timeout=1.0):
                if key.fileobj is self.listener:
                    self._handle(self.listener.accept()[0])
                else:
                    os.read(self.wakeup_r, 4096)
            self._reap()

    def _handle(self, conn: socket.socket) -> None:
        """Fork one executor for the request on `conn`, or refuse with a reason."""
        fds: list[int] = []
        try:
            message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
            request = json.loads(_recv_line(conn, message)[0].decode())
        except (OSError, ValueError):
            request = None
        reason = ("unreadable request" if request is None else self.unusable or _unsafe_to_fork()
                  or _env_mismatch(self.env, request["env"]) or ("" if len(fds) == 3 else "expected 3 descriptors"))
        if reason:
            for fd in fds:
                os.close(fd)
            try:
                conn.sendall(json.dumps({"refused": reason}).encode() + b"\n")
            except OSError:
                pass
            conn.close()
            return
        pid = os.fork()
        if pid == 0:
            self._become_executor(request, fds, conn)
        for fd in fds:
            os.close(fd)
        self.children[pid] = conn
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")

    def _become_executor(self, request: dict[str, Any], fds: list[int], conn: socket.socket) -> None:
        """In the forked child: drop the server, take the worker's pipes, session, limits, environment; serve."""
        code = 0
        try:
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGCHLD, signal.SIGTERM):
                signal.signal(signum, signal.SIG_DFL)
            self.selector.close()
            for sock in (conn, self.listener, *self.children.values()):
                sock.close()
            os.close(self.wakeup_r)
            os.close(self.wakeup_w)
            os.setsid()  # its own process group, so a timeout kills everything it spawned
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
            sys.stdin = open(0, "r", closefd=False)
            sys.stderr = open(2, "w", buffering=1, closefd=False)
            print(f"[harness] executor {os.getpid()} {FORKED_LOG_LINE} {os.getppid()}", file=sys.stderr)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            if request.get("memory_limit_gb"):
                import resource

                limit = int(request["memory_limit_gb"] * (1 << 30))
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            import faulthandler

            import torch

            faulthandler.enable(sys.stderr)  # a segfault prints a Python traceback into the log
            if request.get("threads"):
                torch.set_num_threads(int(request["threads"]))
            from harness import executor_child

            executor_child.serve(int(request["parent"]))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - report in the log, never return into the server loop
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            try:
                sys.stderr.flush()
            finally:
                os._exit(code)

    def _reap(self) -> None:
        """Tell each worker whose executor exited how it exited."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is not None:
                try:
                    conn.sendall(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
                except OSError:
                    pass
                conn.close()


def _stop_benign_threads() -> None:
    """Stop tqdm's monitor thread (a cold warm-up's progress bars start it): a fork needs a single thread.

    Children start their own monitor when they show a bar, as a spawned executor would.
    """
    tqdm = sys.modules.get("tqdm")
    monitor = getattr(getattr(tqdm, "tqdm", None), "monitor", None)
    if monitor is not None:
        monitor.exit()
        tqdm.tqdm.monitor = None


def _unsafe_to_fork() -> str:
    """Why forking now could hand the child a broken state ("" when it is safe)."""
    import threading

    import torch

    tasks = len(os.listdir(f"/proc/{os.getpid()}/task"))
    if threading.active_count() > 1 or tasks > 1:
        return f"fork server has {tasks} threads"
    if torch.cuda.is_initialized():
        return "fork server initialised CUDA"
    return ""


def _env_mismatch(prepared_env: dict[str, str], env: dict[str, str]) -> str:
    wanted = comparable_env(env)
    differ = sorted(k for k in set(wanted) | set(prepared_env) if wanted.get(k) != prepared_env.get(k))
    return "environment differs from the fork server's: " + "; ".join(
        f"{k}={wanted.get(k)!r} (server: {prepared_env.get(k)!r})" for k in differ) if differ else ""


if __name__ == "__main__":
    _server = _Server(int(sys.argv[1]))
    _server.prepare()
    try:
        _server.serve()
    except KeyboardInterrupt:
        pass
