"""Which transformers the harness tests: the installed package, or a source tree given with --transformers-src.

Light on purpose (no torch, no transformers import): the CLI, the executor and environment.py use it.
The chosen tree travels to executor children as an environment variable, so pytest-xdist workers and
their executors all see it; the executor puts it first on the child's PYTHONPATH.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from typing import Any

from harness.errors import HarnessError

ENV_VAR = "HARNESS_TRANSFORMERS_SRC"  # folder that holds the `transformers` package to test
_VERSION = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.MULTILINE)


def resolve_src(path: str) -> str:
    """The folder holding `transformers/__init__.py`: PATH itself or PATH/src (a checkout); else HarnessError."""
    root = os.path.abspath(os.path.expanduser(path))
    for candidate in (root, os.path.join(root, "src")):
        if os.path.isfile(os.path.join(candidate, "transformers", "__init__.py")):
            return candidate
    raise HarnessError(f"{path!r} holds no transformers package (looked for transformers/__init__.py in it and "
                       "in its src/)", key="--transformers-src",
                       allowed="the src/ folder of a transformers checkout, or a folder containing transformers/")


def selected_src() -> str | None:
    """The source tree chosen for this run (from the environment), or None for the installed package."""
    return os.environ.get(ENV_VAR) or None


def package_dir() -> str | None:
    """Folder of the transformers package this run imports (the chosen tree, else the installed one)."""
    src = selected_src()
    if src:
        return os.path.join(src, "transformers")
    spec = importlib.util.find_spec("transformers")  # finds without importing the package
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.abspath(list(spec.submodule_search_locations)[0])


def describe() -> dict[str, Any]:
    """{version, path, git_commit, from_src} of the transformers this run tests; None values when unknown."""
    folder = package_dir()
    info: dict[str, Any] = {"version": None, "path": folder, "git_commit": None, "from_src": selected_src() is not None}
    if folder is None:
        return info
    try:
        with open(os.path.join(folder, "__init__.py"), encoding="utf-8") as fh:
            match = _VERSION.search(fh.read())
        info["version"] = match.group(1) if match else None
    except OSError:
        pass
    info["git_commit"] = _git_commit(folder)
    return info


def _git_commit(folder: str) -> str | None:
    """HEAD (+ '-dirty') of the git checkout that tracks `folder`'s files; None for a plain install."""
    try:
        # Only when transformers' own files are tracked there: a venv inside some other repository
        # (e.g. .venv/ in this one) must not report that repository's commit.
        tracked = subprocess.run(["git", "-C", folder, "ls-files", "--error-unmatch", "__init__.py"],
                                 capture_output=True, text=True, timeout=10, check=False)
        if tracked.returncode != 0:
            return None
        sha = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False).stdout.strip()
        if not sha:
            return None
        dirty = subprocess.run(["git", "-C", folder, "status", "--porcelain", "--untracked-files=no", "--", "."],
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
