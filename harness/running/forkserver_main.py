"""The fork server process (see harness/running/forkserver.py): prepare once, then fork one executor per request."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
from typing import Any

from harness.running.forkserver import FORKED_LOG_LINE, comparable_env, recv_line


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
            import torch

            if torch.cuda.is_available():  # through NVML here (see forkserver.start): CUDA not started yet
                # Dynamo saves the CUDA RNG state around every compile (torch.cuda.get_rng_state()), which starts
                # CUDA in this process, and a forked child cannot use CUDA started in its parent.
                self.unusable = "CUDA machine: a warm-up compile would start CUDA in the fork server"
                return
            from harness.running import warmup

            warmup.prepare()
            _stop_benign_threads()
        except Exception as exc:  # noqa: BLE001 - every request is then refused and workers spawn as usual
            self.unusable = f"fork server could not prepare: {type(exc).__name__}: {exc}"
            return
        # Checked once here, with time for a just-joined thread to go; a lasting reason refuses every request
        # at once (e.g. the CUDA driver's threads on a GPU machine) instead of waiting on each.
        self.unusable = _unsafe_to_fork(grace_s=2.0)

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
            request = json.loads(recv_line(conn, message)[0].decode())
        except (OSError, ValueError):
            request = None
        reason = ("unreadable request" if request is None else self.unusable or _unsafe_to_fork(grace_s=0.2)
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
            from harness.running import executor_child

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


def _unsafe_to_fork(grace_s: float) -> str:
    """Why forking now could hand the child a broken state ("" when it is safe).

    A thread that was just joined can linger in /proc for a moment while the OS tears it down: wait a little.
    """
    import threading
    import time

    import torch

    deadline = time.monotonic() + grace_s
    while True:
        tasks = os.listdir(f"/proc/{os.getpid()}/task")
        if threading.active_count() == 1 and len(tasks) == 1:
            break
        if time.monotonic() > deadline:
            return (f"fork server has {len(tasks)} threads (python: "
                    f"{', '.join(t.name for t in threading.enumerate())}; os: {', '.join(_comm(t) for t in tasks)})")
        time.sleep(0.01)
    if torch.cuda.is_initialized():
        return "fork server initialised CUDA"
    return ""


def _comm(task: str) -> str:
    try:
        with open(f"/proc/{os.getpid()}/task/{task}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return "?"


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
