"""One pip virtualenv per (torch, transformers release), built as a user would install it, and cached.

Two ways to build one (`--envs-kind`):
- `standalone`: a fresh venv where pip installs torch, the harness's run dependencies and `transformers==X`
  (what `pip install torch transformers==X` gives a user). About 0.9 GB per environment with the CPU torch, about
  5.5 GB with a CUDA torch, and ~40 s of unpacking torch per release.
- `shared-torch` (default): per torch version one *base* venv (pip: torch, pytest, pytest-xdist, pyyaml), and per
  release a venv of its own where pip installs `transformers==X` and resolves every pin of that release
  (tokenizers, huggingface-hub, numpy, ...) into the release's own site-packages. The base's site-packages is
  visible to it through one `.pth` line placed *after* the release's own, so torch (and pip itself) is installed
  once per version and the release's packages win over the base's. pip sees the base's packages when it resolves, as it would see
  them installed in one environment; `pip check` runs in every environment and its `pip freeze` is kept.

An environment is ready when its marker file exists (written last): an interrupted build is rebuilt from scratch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from harness.errors import HarnessError

KINDS = ("shared-torch", "standalone")
RUN_DEPENDENCIES = ("pytest>=8", "pytest-xdist>=3.5", "pyyaml>=6")  # pyproject's dependencies besides torch
MARKER = "history-env.json"
_PYTHON = "%d.%d" % sys.version_info[:2]  # environments are built from this interpreter; another one rebuilds them
_PTH = "zz_history_base.pth"
_BASE_LOCK = threading.Lock()  # sorts last: the release's own .pth files come first


@dataclass(frozen=True)
class Env:
    """A built environment: its python, and what it holds."""

    folder: str
    python: str
    torch: str
    transformers: str
    kind: str
    build_s: float  # seconds this call spent building it (0.0 when it was cached)
    freeze: str  # `pip freeze` of the environment


def env_folder(root: str, torch: str, transformers: str, kind: str) -> str:
    """Where the environment of a (torch, transformers) pair lives under `root`."""
    return os.path.join(root, f"torch-{torch}", f"{'' if kind == 'shared-torch' else 'standalone-'}"
                                                f"transformers-{transformers}")


def python_of(folder: str) -> str:
    """The interpreter of the venv in `folder`."""
    return os.path.join(folder, "Scripts", "python.exe") if os.name == "nt" else os.path.join(folder, "bin", "python")


def ensure(root: str, torch: str, transformers: str, kind: str = "shared-torch", log=None) -> Env:
    """The environment of (torch, transformers), built now unless a finished one is cached under `root`."""
    if kind not in KINDS:
        raise HarnessError(f"unknown kind {kind!r}", key="--envs-kind", allowed=", ".join(KINDS))
    folder = env_folder(root, torch, transformers, kind)
    cached = _read_marker(folder)
    if cached is not None and cached.get("python") == _PYTHON:
        return Env(folder, python_of(folder), torch, transformers, kind, 0.0, cached.get("freeze", ""))
    start = time.perf_counter()
    if kind == "shared-torch":
        base = _ensure_base(root, torch, log)
        _fresh_venv(folder, log, with_pip=False)  # pip, like torch, comes from the base
        with open(os.path.join(_site_packages(folder), _PTH), "w", encoding="utf-8") as fh:
            fh.write(_site_packages(base) + "\n")
        _pip(folder, [f"transformers=={transformers}"], log)
    else:
        _fresh_venv(folder, log)
        _pip(folder, [f"torch=={torch}", *RUN_DEPENDENCIES, f"transformers=={transformers}"], log)
    freeze = _check(folder, torch, transformers, log)
    elapsed = time.perf_counter() - start
    _write_marker(folder, {"torch": torch, "transformers": transformers, "kind": kind, "build_s": elapsed,
                           "python": _PYTHON, "freeze": freeze})
    return Env(folder, python_of(folder), torch, transformers, kind, elapsed, freeze)


def _ensure_base(root: str, torch: str, log) -> str:
    """The base venv of one torch version (torch and the harness's run dependencies), built once."""
    folder = os.path.join(root, f"torch-{torch}", "base")
    with _BASE_LOCK:  # the sweep builds the next pair's environment in a thread
        if (_read_marker(folder) or {}).get("python") != _PYTHON:
            _fresh_venv(folder, log)
            _pip(folder, [f"torch=={torch}", *RUN_DEPENDENCIES], log)
            _write_marker(folder, {"torch": torch, "kind": "base", "python": _PYTHON})
    return folder


def _fresh_venv(folder: str, log, with_pip: bool = True) -> None:
    if os.path.exists(folder):
        shutil.rmtree(folder)  # a half-built environment (no marker): start again
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    _call([sys.executable, "-m", "venv", *([] if with_pip else ["--without-pip"]), folder], log, f"creating {folder}")


def _pip(folder: str, requirements: list[str], log) -> None:
    _call([python_of(folder), "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check",
           *requirements], log,
          f"pip install {' '.join(requirements)}")


def _check(folder: str, torch: str, transformers: str, log) -> str:
    """Import both, compare their versions with the pair's; `pip check`; returns `pip freeze`."""
    probe = ("import importlib.metadata as m, sys; "
             "print(m.version('torch').split('+')[0], m.version('transformers'))")
    got = _call([python_of(folder), "-c", probe], log, "version check", capture=True).split()
    if got != [torch.split("+")[0], transformers]:
        raise HarnessError(f"{folder}: expected torch {torch} and transformers {transformers}, found {got}",
                           key="environment")
    pip_check = subprocess.run([python_of(folder), "-m", "pip", "check"], capture_output=True, text=True, check=False)
    if log:
        log(f"pip check: {pip_check.stdout.strip() or pip_check.stderr.strip()}")
    return _call([python_of(folder), "-m", "pip", "freeze", "--disable-pip-version-check"], log, "pip freeze",
                 capture=True)


def _site_packages(folder: str) -> str:
    out = subprocess.run([python_of(folder), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _call(cmd: list[str], log, what: str, capture: bool = False) -> str:
    if log:
        log(what)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise HarnessError(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}", key="environment")
    return proc.stdout if capture else ""


def _read_marker(folder: str) -> dict | None:
    try:
        with open(os.path.join(folder, MARKER), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _write_marker(folder: str, doc: dict) -> None:
    tmp = os.path.join(folder, MARKER + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
    os.replace(tmp, os.path.join(folder, MARKER))
