"""`python -m harness update-baseline RESULTS...`: record results as the baselines of their environments."""

from __future__ import annotations

import argparse
import os
from collections import Counter

from harness.results.baseline import BASELINE_DIR, baseline_path, change_lines, diff_cells, load_cells, summary, write_baseline
from harness.errors import EXIT_REGRESSION
from harness.results.observations import env_sort_key, load_observations
from harness.results.merge import merge
from harness.cli.usage import check_input_file, check_output_dir


def add_parser(sub) -> None:
    """Register `update-baseline` and its options."""
    parser = sub.add_parser("update-baseline", help="write results into reports/baselines/<environment>.json and "
                                                    "print what changed")
    parser.add_argument("results", nargs="+", help="results.json (or merged) files, shards included")
    parser.add_argument("--dir", default=BASELINE_DIR, help=f"baseline folder (default: {BASELINE_DIR})")
    parser.add_argument("--replace", action="store_true",
                        help="drop baseline cells the results do not have (default: keep them, for partial runs)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a baseline would change")


def run(args: argparse.Namespace) -> int:
    """0: written (or, with --check, nothing to change); 1: --check found changes; 2: bad input."""
    for path in args.results:
        check_input_file(path, "results")
    if not args.check:
        check_output_dir(args.dir, "--dir")
    elif os.path.exists(args.dir) and not os.path.isdir(args.dir):
        check_output_dir(args.dir, "--dir")  # says: not a folder
    merged = merge(load_observations(args.results))
    by_env: dict[str, dict] = {}
    for (key, cell_id), cell in merged.cells.items():
        by_env.setdefault(key, {})[cell_id] = cell
    changed = False
    for env in sorted(merged.envs.values(), key=env_sort_key):
        path = baseline_path(env, args.dir)
        old = load_cells(path)[1].get(env.key, {}) if os.path.exists(path) else {}
        new = dict(by_env[env.key]) if args.replace else {**old, **by_env[env.key]}
        for cell in new.values():
            cell.pop("env", None)
        changes = diff_cells(old, new)
        if not os.path.exists(path):  # every cell would be `added`: counts say more than a line per cell
            statuses = Counter(cell["status"] for cell in new.values())
            print(f"{path}: new, {len(new)} cells (" + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + ")")
        else:
            print(f"{path}: {summary(changes) or 'no change'}")
            for line in change_lines(changes):
                print("  " + line)
        if changes or not os.path.exists(path):
            changed = True
            if not args.check:
                write_baseline(path, env, new)
    if args.check and changed:
        print("baselines are out of date: python -m harness update-baseline " + " ".join(args.results))
        return EXIT_REGRESSION
    return 0
