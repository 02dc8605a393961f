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
- `inherited`: for a machine that cannot download (a GPU machine whose image holds torch and transformers'
  dependencies). Per release a venv (no pip of its own) that sees every site-packages folder of the python running
  the harness, after its own: one `.pth` line `import site; site.addsitedir(...)` per folder, so those folders'
  own `.pth` files work too. Unlike `venv --system-site-packages`, this also works when that python is itself a venv
  (the GPU image's python3 is one). pip, from that python, installs only `transformers==X` from a folder of
  wheels (`--no-index --no-deps --ignore-installed --find-links WHEELS`), so the release shadows the image's own
  transformers and everything else, torch included, is the image's: the torch version is the running python's,
  never installed. Nothing resolves the release's pins: `pip check` says which the image does not meet, and its
  lines head `pip-freeze.txt` (as comments) and the pair's sweep.json entry.

`pip check`'s complaints (none: an empty list) are kept with every environment (`Env.pip_check`).

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

KINDS = ("shared-torch", "standalone", "inherited")
RUN_DEPENDENCIES = ("pytest>=8", "pytest-xdist>=3.5", "pyyaml>=6")  # pyproject's dependencies besides torch
MARKER = "history-env.json"
_PYTHON = "%d.%d" % sys.version_info[:2]  # environments are built from this interpreter; another one rebuilds them
_PTH = "zz_history_base.pth"
_INHERITED_PTH = "zz_history_inherited.pth"  # sorts last, like _PTH
_PIP_CHECK_OK = "No broken requirements found."
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
    pip_check: tuple[str, ...] = ()  # what `pip check` found broken (empty: nothing)


def env_folder(root: str, torch: str, transformers: str, kind: str) -> str:
    """Where the environment of a (torch, transformers) pair lives under `root`."""
    return os.path.join(root, f"torch-{torch}", f"{'' if kind == 'shared-torch' else kind + '-'}"
                                                f"transformers-{transformers}")


def interpreter_torch() -> str:
    """The torch version of the python running the harness, without its local part (2.11.0 of 2.11.0+cu130)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("torch").split("+")[0]
    except importlib.metadata.PackageNotFoundError:
        raise HarnessError(f"{sys.executable} has no torch: --envs-kind inherited uses the running python's torch",
                           key="--envs-kind") from None


def interpreter_site_dirs() -> list[str]:
    """The running python's site-packages folders (user site included when on), in sys.path order."""
    import site

    known = set(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    if site.ENABLE_USER_SITE:
        known.add(site.getusersitepackages())
    return list(dict.fromkeys(p for p in sys.path if p in known and os.path.isdir(p)))


def wheel_of(wheels: str, transformers: str) -> str | None:
    """The transformers wheel of one release in the folder `wheels`, or None."""
    prefix = f"transformers-{transformers}-"
    found = sorted(name for name in _listdir(wheels) if name.startswith(prefix) and name.endswith(".whl"))
    return os.path.join(wheels, found[0]) if found else None


def wheel_versions(wheels: str) -> list[str]:
    """Every transformers release with a wheel in the folder `wheels` (the releases an offline sweep can run)."""
    from harness.history.releases import is_release, key

    versions = {name.split("-")[1] for name in _listdir(wheels)
                if name.startswith("transformers-") and name.endswith(".whl") and name.count("-") >= 2}
    return sorted((v for v in versions if is_release(v)), key=key)


def _listdir(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError as exc:
        raise HarnessError(f"cannot read the wheels folder {folder}: {exc.strerror}", key="--wheels") from None


def python_of(folder: str) -> str:
    """The interpreter of the venv in `folder`."""
    return os.path.join(folder, "Scripts", "python.exe") if os.name == "nt" else os.path.join(folder, "bin", "python")


def ensure(root: str, torch: str, transformers: str, kind: str = "shared-torch", log=None,
           wheels: str | None = None) -> Env:
    """The environment of (torch, transformers), built now unless a finished one is cached under `root`.

    `wheels`: the folder of transformers wheels (`inherited` only; there `torch` must be the running python's)."""
    if kind not in KINDS:
        raise HarnessError(f"unknown kind {kind!r}", key="--envs-kind", allowed=", ".join(KINDS))
    folder = env_folder(root, torch, transformers, kind)
    wheel = None
    if kind == "inherited":
        wheel = wheel_of(wheels or "", transformers) if wheels else None
        if wheel is None:
            raise HarnessError(f"no transformers {transformers} wheel in {wheels or '(no --wheels folder)'}",
                               key="--wheels")
        if torch != interpreter_torch():
            raise HarnessError(f"--envs-kind inherited runs this python's torch {interpreter_torch()}, not {torch}",
                               key="--torch")
    identity = {"python": _PYTHON, **({"interpreter": sys.prefix, "wheel": os.path.basename(wheel)} if wheel else {})}
    cached = _read_marker(folder)
    if cached is not None and all(cached.get(k) == v for k, v in identity.items()):
        return Env(folder, python_of(folder), torch, transformers, kind, 0.0, cached.get("freeze", ""),
                   tuple(cached.get("pip_check", ())))
    start = time.perf_counter()
    if kind == "inherited":
        _fresh_venv(folder, log, with_pip=False)  # pip, torch and the rest come from the running python
        with open(os.path.join(_site_packages(folder), _INHERITED_PTH), "w", encoding="utf-8") as fh:
            fh.write("".join(f"import site; site.addsitedir({d!r})\n" for d in interpreter_site_dirs()))
        _pip(folder, ["--no-index", "--no-deps", "--ignore-installed", "--find-links", os.path.dirname(wheel),
                      f"transformers=={transformers}"], log)
    elif kind == "shared-torch":
        base = _ensure_base(root, torch, log)
        _fresh_venv(folder, log, with_pip=False)  # pip, like torch, comes from the base
        with open(os.path.join(_site_packages(folder), _PTH), "w", encoding="utf-8") as fh:
            fh.write(_site_packages(base) + "\n")
        _pip(folder, [f"transformers=={transformers}"], log)
    else:
        _fresh_venv(folder, log)
        _pip(folder, [f"torch=={torch}", *RUN_DEPENDENCIES, f"transformers=={transformers}"], log)
    freeze, pip_check = _check(folder, torch, transformers, log)
    elapsed = time.perf_counter() - start
    _write_marker(folder, {"torch": torch, "transformers": transformers, "kind": kind, "build_s": elapsed,
                           **identity, "freeze": freeze, "pip_check": list(pip_check)})
    return Env(folder, python_of(folder), torch, transformers, kind, elapsed, freeze, pip_check)


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


def _check(folder: str, torch: str, transformers: str, log) -> tuple[str, tuple[str, ...]]:
    """Import both, compare their versions with the pair's; `pip check`; returns `pip freeze` and pip check's
    complaints (empty when it found nothing broken)."""
    probe = ("import importlib.metadata as m, sys; "
             "print(m.version('torch').split('+')[0], m.version('transformers'))")
    got = _call([python_of(folder), "-c", probe], log, "version check", capture=True).split()
    if got != [torch.split("+")[0], transformers]:
        raise HarnessError(f"{folder}: expected torch {torch} and transformers {transformers}, found {got}",
                           key="environment")
    pip_check = subprocess.run([python_of(folder), "-m", "pip", "check"], capture_output=True, text=True, check=False)
    said = (pip_check.stdout.strip() or pip_check.stderr.strip()).splitlines()
    if log:
        log(f"pip check: {' | '.join(said)}")
    problems = tuple(line.strip() for line in said if line.strip() and line.strip() != _PIP_CHECK_OK)
    freeze = _call([python_of(folder), "-m", "pip", "freeze", "--disable-pip-version-check"], log, "pip freeze",
                   capture=True)
    return freeze, problems


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
