"""`git bisect run` driver for a cell's repro script: 0 behaviour absent, 1 reproduces, 125 cannot test.

Standalone (standard library only): git runs it at every commit of a transformers checkout, as
    git bisect run python history_bisect_driver.py --script repro_CELL.py --src CHECKOUT/src [--match REGEX]
The repro script (`python -m harness repro CELL_ID --out FILE`) exits 0 when every call passes and 1 with a
traceback when the failure reproduces; a failing import also exits 1 there. This driver runs it in a child
process that first imports transformers from --src and checks that the commit has what the cell needs, so:
- 125 (skip this commit): transformers does not import from --src, or the commit lacks the cell's family
  (config, modeling module, experts class) or its ExpertsInterface key; also a timeout, and, with --match,
  a failure whose output does not match (another failure: this commit cannot say);
- 1: the script failed (a traceback, or the process died of a signal);
- 0: the script passed.
--fixed swaps 0 and 1, to find the commit that fixed a failure (bisect with --term-old=broken --term-new=fixed).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

GOOD, BAD, SKIP = 0, 1, 125
CANNOT_TEST = 125  # the child's own exit code for "this commit cannot run the cell"

_CHILD = r'''
import importlib, os, runpy, sys, traceback
src, script = sys.argv[1], sys.argv[2]
sys.path.insert(0, src)
def cannot(why):
    print(f"bisect-driver: cannot test this commit: {why}", flush=True)
    sys.exit(125)
try:
    import transformers
    import transformers.integrations.moe as moe
except Exception as exc:
    traceback.print_exc()
    cannot(f"transformers does not import ({type(exc).__name__}: {exc})")
if not os.path.abspath(transformers.__file__).startswith(os.path.join(os.path.abspath(src), "")):
    cannot(f"transformers imported from {transformers.__file__}, not from {src}")
ns = runpy.run_path(script, run_name="bisect_repro")
cell = ns["CELL"]  # the cell's axis values, written by `harness repro` into every script
if cell.get("source") == "transformers":
    key = cell["backend"]
    mapping = getattr(getattr(moe, "ExpertsInterface", None), "_global_mapping", None)
    if key != "eager" and (mapping is None or key not in mapping):
        cannot(f"no {key!r} in ExpertsInterface")
    fam = ns["family"](cell["layout"]) if "family" in ns else None
    if fam is not None:
        if not hasattr(transformers, fam.config_class):
            cannot(f"no transformers.{fam.config_class}")
        try:
            module = importlib.import_module(f"transformers.models.{fam.model_type}.modeling_{fam.model_type}")
        except Exception as exc:
            cannot(f"transformers.models.{fam.model_type} does not import ({type(exc).__name__}: {exc})")
        if not hasattr(module, fam.experts_class):
            cannot(f"no {fam.experts_class}")
try:
    code = ns["main"]()
except SystemExit as exc:
    code = exc.code
except BaseException:
    traceback.print_exc()
    code = 1
sys.stdout.flush()
sys.exit(1 if code not in (0, None) else 0)
'''


def classify(returncode: int | None, output: str, match: str | None) -> int:
    """The bisect verdict of one run of the child: GOOD, BAD or SKIP (None: timed out)."""
    if returncode is None or returncode == CANNOT_TEST:
        return SKIP
    if returncode == 0:
        return GOOD
    if match and not re.search(match, output):
        return SKIP  # it failed, but not the way the cell fails
    return BAD


def main(argv: list[str] | None = None) -> int:
    """Run the repro script once against the checkout; the exit code for `git bisect run`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", required=True, help="the cell's repro script")
    parser.add_argument("--src", required=True, help="the folder holding transformers/ (a checkout's src/)")
    parser.add_argument("--match", default=None, help="only a failure whose output matches this regex reproduces")
    parser.add_argument("--fixed", action="store_true", help="swap 0 and 1: look for the commit that fixed it")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before a commit is skipped")
    parser.add_argument("--python", default=sys.executable, help="interpreter with torch")
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (args.src, os.environ.get("PYTHONPATH")) if p)}
    try:
        proc = subprocess.run([args.python, "-c", _CHILD, args.src, args.script], capture_output=True, text=True,
                              timeout=args.timeout, env=env, check=False)
        returncode, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        returncode, output = None, f"timed out after {args.timeout:g} s: {exc}"
    verdict = classify(returncode, output, args.match)
    if args.fixed and verdict != SKIP:
        verdict = GOOD if verdict == BAD else BAD
    tail = "\n".join(output.strip().splitlines()[-6:])
    print(f"{tail}\nbisect-driver: child exit {returncode} -> {verdict} "
          f"({ {GOOD: 'good', BAD: 'bad', SKIP: 'skip'}[verdict] })", flush=True)
    return verdict


if __name__ == "__main__":
    sys.exit(main())
