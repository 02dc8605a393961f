"""Bisect inside a transformers checkout: the first commit where a cell's failure appears (or goes away).

1. `python -m harness repro CELL_ID --out DIR/repro.py` writes the cell's standalone script;
2. `git bisect start BAD GOOD` in the checkout, then `git bisect run python history_bisect_driver.py ...`
   (0 behaviour absent, 1 reproduces, 125 this commit cannot run the cell: import fails, family or key missing);
3. the first bad commit is read from git's output, the log is kept, and `git bisect reset` restores the checkout.
With `fixed=True` the terms are `broken`/`fixed`: GOOD is a commit where the cell fails, BAD one where it passes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from harness.errors import HarnessError
from harness.portable import CHECKOUT


DRIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bisect_driver.py")
_FIRST = re.compile(r"^([0-9a-f]{40}) is the first (\w+) commit", re.MULTILINE)


@dataclass
class BisectResult:
    """What `git bisect run` found."""

    commit: str | None  # the first bad (or first fixed) commit; None when skipped commits hide it
    subject: str
    candidates: list[str]  # when git could not decide (skipped commits): every commit it could be
    log: str  # `git bisect log`
    output: str  # `git bisect run`'s output


def source_folder(checkout: str) -> str:
    """The folder that holds transformers/: CHECKOUT/src or CHECKOUT."""
    for folder in (os.path.join(checkout, "src"), checkout):
        if os.path.isdir(os.path.join(folder, "transformers")):
            return os.path.abspath(folder)
    raise HarnessError(f"{checkout} holds no transformers/ (looked in it and in its src/)", key="--checkout")


def write_repro(cell_id: str, path: str, matrix: str | None = None, python: str = sys.executable) -> None:
    """The cell's repro script, written by `python -m harness repro` (exit 2 there: one error line here)."""
    cmd = [python, "-m", "harness", "repro", cell_id, "--out", path] + (["--matrix", matrix] if matrix else [])
    proc = subprocess.run(cmd, cwd=CHECKOUT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise HarnessError(f"harness repro failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}",
                           key="CELL_ID")


def bisect(cell_id: str, checkout: str, good: str, bad: str, *, match: str | None = None, fixed: bool = False,
           matrix: str | None = None, timeout: float = 600.0, python: str = sys.executable,
           script: str | None = None) -> BisectResult:
    """Run `git bisect` in `checkout` between `good` and `bad` with the cell's repro script; reset afterwards."""
    src = source_folder(checkout)
    _git(checkout, "rev-parse", "--verify", good)
    _git(checkout, "rev-parse", "--verify", bad)
    if _git(checkout, "status", "--porcelain", "--untracked-files=no").strip():
        raise HarnessError(f"{checkout} has uncommitted changes; bisect checks out other commits", key="--checkout")
    work = tempfile.mkdtemp(prefix="harness-bisect-")
    try:
        repro = os.path.join(work, "repro.py")
        if script:
            shutil.copyfile(script, repro)
        else:
            write_repro(cell_id, repro, matrix, python)
        driver = os.path.join(work, "driver.py")  # a copy: the checkout's commits never touch it
        shutil.copyfile(DRIVER, driver)
        terms = ["--term-old=broken", "--term-new=fixed"] if fixed else []
        _git(checkout, "bisect", "start", *terms, bad, good)
        try:
            cmd = [python, driver, "--script", repro, "--src", src, "--timeout", str(timeout), "--python", python]
            cmd += (["--match", match] if match else []) + (["--fixed"] if fixed else [])
            run = subprocess.run(["git", "-C", checkout, "bisect", "run", *cmd], capture_output=True, text=True,
                                 check=False)
            output = run.stdout + run.stderr
            log = _git(checkout, "bisect", "log")
        finally:
            _git(checkout, "bisect", "reset")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    found = _FIRST.search(output)
    if found:
        subject = _git(checkout, "log", "-1", "--format=%s", found.group(1)).strip()
        return BisectResult(found.group(1), subject, [found.group(1)], log, output)
    candidates = re.findall(r"^([0-9a-f]{40})$", output.split("could be any of:")[-1], re.MULTILINE) \
        if "could be any of" in output else []
    return BisectResult(None, "", candidates, log, output)


def _git(checkout: str, *args: str) -> str:
    proc = subprocess.run(["git", "-C", checkout, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise HarnessError(f"git {' '.join(args)}: {(proc.stderr or proc.stdout).strip()}", key="--checkout")
    return proc.stdout
