"""`python -m harness history`: sweep transformers (and torch) releases, tabulate since when each cell changed.

  python -m harness history [RELEASES...] [--torch V,...] [slice options]   sweep, then write the history
  python -m harness history --report [--out DIR]                            rewrite HISTORY.md / history.html
  python -m harness history --bench 5.20.0 5.21.0 5.22.0                    what a release beyond the first costs
  python -m harness history --bisect CELL_ID --checkout PATH --good REV --bad REV   first bad commit
"""

from __future__ import annotations

import argparse
import json
import os

from harness.errors import EXIT_REGRESSION, HarnessError

HELP = ([
    "python -m harness history                                   # every 5.x release, torch 2.13.0, kernel cells",
    "python -m harness history 5.2.0 5.3.0 --cell transformers-grouped_mm-default-float16-fullgraph-cpu-decode",
    "python -m harness history 5.10.1..5.13.1 --torch 2.13.0,2.14.1 -k 'grouped_mm and decode'",
    "python -m harness history --latest-patches -k 'default and decode'   # newest patch of every minor",
    "python -m harness history --report --out reports/history/cpu-torch2.13.0",
    "python -m harness history 5.3.0 5.4.0 --like reports/history/cpu-torch2.13.0   # same slice, same statuses?",
    "python -m harness history --bench 5.20.0 5.21.0 5.22.0 --cell ... --out /tmp/history-bench",
    "python3 -m harness history --envs-kind inherited --wheels .whl --device cuda -n 16   # offline: this python's "
    "torch, the releases whose wheels are in .whl",
    "python -m harness history --bisect CELL_ID --checkout ~/transformers --good v5.2.0 --bad v5.3.0",
], ["  0    swept (whatever the cells did), report written, bisect found the commit",
    "  1    --compare: a status differs from the other sweep; --bisect: no single commit found; "
    "a pair's environment or run failed"])


def add_parser(sub) -> None:
    """Register `history` and its options."""
    from harness.cli import main as cli

    if isinstance(getattr(cli, "HELP", None), dict):  # examples and exit codes under --help
        cli.HELP.setdefault("history", HELP)
    p = sub.add_parser("history", help="sweep transformers/torch releases: since when does each cell pass or fail",
                       description=__doc__.split("\n\n", 1)[0])
    p.add_argument("releases", nargs="*", metavar="RELEASE",
                   help="transformers releases: X.Y.Z or ranges X.Y.Z..X.Y.Z (default: every 5.x release with the "
                        "experts interface, from the package index)")
    p.add_argument("--torch", default=None,
                   help="torch versions, comma-separated (default: $HARNESS_TORCH or 2.13.0; with --envs-kind "
                        "inherited: the running python's)")
    p.add_argument("--out", default=os.path.join("reports", "history", "latest"),
                   help="output folder (default: reports/history/latest of the checkout)")
    p.add_argument("--envs", default=os.path.join(".nox", "history"),
                   help="where the cached environments live (default: .nox/history of the checkout)")
    p.add_argument("--envs-kind", default="shared-torch", choices=["shared-torch", "standalone", "inherited"],
                   help="shared-torch: torch installed once per version, each release in its own venv on top; "
                        "standalone: every pair a full venv (torch too); inherited (a machine that cannot "
                        "download): each release's venv sees this python's packages, torch included, and gets only "
                        "transformers, from --wheels")
    p.add_argument("--wheels", metavar="DIR", default=None,
                   help="--envs-kind inherited: folder of transformers-X-py3-none-any.whl files (pip download "
                        "--no-deps transformers==X); without releases named, every release found there")
    p.add_argument("--inductor-cache", default=None, help="TORCHINDUCTOR_CACHE_DIR shared by every pair "
                   "(default: ENVS/inductor-cache)")
    p.add_argument("--pycache", default=None, help="Python bytecode cache shared by every pair's run "
                   "(PYTHONPYCACHEPREFIX; default: ENVS/pycache)")
    p.add_argument("--latest-patches", action="store_true", help="only the newest patch release of each minor")
    p.add_argument("--source", action="append", default=[], help="slice: only this source (default: transformers)")
    p.add_argument("--device", action="append", default=[], choices=["cpu", "cuda"],
                   help="slice: only this device (default: the device at hand)")
    p.add_argument("--cell", action="append", default=[], help="slice: only this cell id (repeatable)")
    p.add_argument("-k", dest="keyword", default=None,
                   help="slice: pytest -k expression on cell ids (default without --cell: 'not model and not "
                        "training', the kernel inference cells)")
    p.add_argument("-n", dest="workers", default="2", help="pytest-xdist workers per pair (default 2)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--report", action="store_true", help="only (re)write the history from --out")
    mode.add_argument("--bench", action="store_true", help="measure sweep vs cold cost of the releases given")
    mode.add_argument("--bisect", metavar="CELL_ID", default=None, help="bisect a transformers checkout")
    mode.add_argument("--dry-run", action="store_true", help="print the pairs and the slice, run nothing")
    p.add_argument("--like", metavar="DIR", default=None,
                   help="the slice of the sweep in DIR (its sweep.json), and --compare DIR afterwards: reproduces "
                        "a committed sweep for the releases given")
    p.add_argument("--compare", metavar="DIR", default=None,
                   help="after the sweep: statuses must equal those of the sweep in DIR for the releases both have")
    p.add_argument("--checkout", default=None, help="--bisect: the transformers git checkout")
    p.add_argument("--good", default=None, help="--bisect: a commit where the cell behaves (or, --fixed, fails)")
    p.add_argument("--bad", default=None, help="--bisect: a commit where the cell fails (or, --fixed, behaves)")
    p.add_argument("--match", default=None, help="--bisect: only a failure whose output matches this regex counts")
    p.add_argument("--fixed", action="store_true", help="--bisect: find the first commit where the failure is gone")
    p.add_argument("--script", default=None, help="--bisect: use this repro script instead of generating one")


def run(args: argparse.Namespace) -> int:
    """Dispatch to the sweep, the report, the benchmark or the bisect."""
    if args.bisect:
        return _bisect(args)
    if args.report:
        return _report(args.out)
    if args.like:
        args.compare = args.compare or args.like
    config = _config(args)
    if args.dry_run:
        print(json.dumps({"releases": config.releases, "torch": config.torches, "run_args": config.run_args,
                          "cells": config.cells, "out": config.out, "envs": config.envs,
                          "envs_kind": config.envs_kind, "wheels": config.wheels,
                          "inductor_cache": config.inductor_cache, "pycache": config.pycache}, indent=1))
        return 0
    if args.bench:
        from harness.history.bench import bench, lines

        doc = bench(config)
        print("\n".join(lines(doc)))
        return 0
    from harness.history.sweep import read_sweep, sweep
    from harness.results.results_json import atomic_write_json

    os.makedirs(config.out, exist_ok=True)
    record = read_sweep(config.out)
    record["slice"] = {"run_args": config.run_args, "cells": config.cells, "workers": config.workers}
    atomic_write_json(os.path.join(config.out, "sweep.json"), record)
    code = sweep(config)
    if code:
        return code
    _report(config.out)
    failed = [k for k, v in read_sweep(config.out)["pairs"].items() if v.get("state") not in ("complete", "no_cells")]
    if failed:
        print(f"pairs whose environment or run failed: {', '.join(failed)} (see sweep.json and their run.log)")
    if args.compare:
        from harness.history.compare import compare

        differences = compare(config.out, args.compare, config.releases)
        print("\n".join(differences) or f"statuses identical to {args.compare} for every release both have")
        return EXIT_REGRESSION if differences else 0
    return EXIT_REGRESSION if failed else 0


def _config(args: argparse.Namespace):
    from harness.history import releases as history_releases
    from harness.history.sweep import DEFAULT_KEYWORD, SweepConfig, default_device

    if args.envs_kind == "inherited":
        releases, torches = _inherited(args)
    else:
        if args.wheels:
            raise HarnessError("only --envs-kind inherited installs from a folder of wheels", key="--wheels")
        releases = history_releases.select(args.releases)
        given = args.torch if args.torch is not None else os.environ.get("HARNESS_TORCH", "2.13.0")
        torches = [t.strip() for t in given.split(",") if t.strip()]
        if not torches:
            raise HarnessError("no torch version given", key="--torch")
    if args.latest_patches:
        releases = history_releases.latest_patches(releases)
    run_args = []
    for source in args.source or ["transformers"]:
        run_args += ["--source", source]
    for device in args.device or [default_device()]:
        run_args += ["--device", device]
    keyword = args.keyword if args.keyword is not None else (None if args.cell else DEFAULT_KEYWORD)
    if keyword:
        run_args += ["-k", keyword]
    run_args.append("-q")
    cells = list(args.cell)
    if args.like:
        from harness.history.sweep import read_sweep

        recorded = read_sweep(args.like).get("slice")
        if not recorded:
            raise HarnessError(f"{args.like} has no sweep.json with a slice", key="--like")
        run_args, cells = list(recorded["run_args"]), list(recorded.get("cells") or [])
    return SweepConfig(releases=releases, torches=torches, out=args.out, envs=args.envs,
                       inductor_cache=args.inductor_cache or os.path.join(args.envs, "inductor-cache"),
                       run_args=run_args, cells=cells, workers=args.workers, envs_kind=args.envs_kind,
                       wheels=os.path.abspath(args.wheels) if args.wheels else None,
                       pycache=args.pycache or os.path.join(args.envs, "pycache"))


def _inherited(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """--envs-kind inherited: the releases (checked against the wheels folder) and the one torch, this python's."""
    from harness.history import envs as history_envs, releases as history_releases

    if not args.wheels:
        raise HarnessError("--envs-kind inherited installs transformers from a folder of wheels: give --wheels DIR",
                           key="--wheels")
    if not os.path.isdir(args.wheels):
        raise HarnessError(f"not a folder: {args.wheels}", key="--wheels")
    here = history_envs.interpreter_torch()
    if args.torch is not None and [t.strip() for t in args.torch.split(",") if t.strip()] != [here]:
        raise HarnessError(f"--envs-kind inherited runs this python's torch {here}; --torch {args.torch} differs",
                           key="--torch")
    releases = history_releases.select(args.releases, lambda: history_envs.wheel_versions(args.wheels))
    if not releases:
        raise HarnessError(f"no transformers 5.x wheel in {args.wheels}", key="--wheels")
    missing = [r for r in releases if history_envs.wheel_of(args.wheels, r) is None]
    if missing:
        raise HarnessError(f"no wheel in {args.wheels} for transformers {', '.join(missing)} (pip download --no-deps "
                           f"--only-binary=:all: -d {args.wheels} transformers==X, on a machine with network)",
                           key="--wheels")
    return releases, [here]


def _report(out: str) -> int:
    from harness.history.write import write

    paths = write(out)
    print("history: wrote " + ", ".join(paths))
    return 0


def _bisect(args: argparse.Namespace) -> int:
    from harness.history.bisect import bisect

    for name in ("checkout", "good", "bad"):
        if not getattr(args, name):
            raise HarnessError("required with --bisect", key=f"--{name}")
    result = bisect(args.bisect, args.checkout, args.good, args.bad, match=args.match, fixed=args.fixed,
                    script=args.script)
    print(result.log.rstrip())
    if result.commit:
        print(f"first {'fixed' if args.fixed else 'bad'} commit: {result.commit} {result.subject}")
        return 0
    print("no single commit: " + (f"it is one of {', '.join(result.candidates)} (skipped commits hide it)"
                                  if result.candidates else result.output.strip()[-2000:]))
    return EXIT_REGRESSION
