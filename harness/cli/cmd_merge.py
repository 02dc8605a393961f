"""`python -m harness merge`: join shards and machines into one document, one table and one diff."""

from __future__ import annotations

import argparse
import os

from harness.results.baseline import BASELINE_DIR, against_baselines, change_lines, cross_env_changes, summary
from harness.errors import EXIT_REGRESSION
from harness.portable import portable_path
from harness.report.claims import DEFAULT_CLAIMS
from harness.results.observations import observations_of
from harness.report.markdown import changes_lines
from harness.results.merge import merge
from harness.results.results_json import atomic_write_json, read_results
from harness.cli.usage import check_input_file, check_output_dir


def add_parser(sub) -> None:
    """Register `merge` and its options."""
    parser = sub.add_parser("merge", help="merge results of shards, machines and versions; write table and diff")
    parser.add_argument("results", nargs="+", help="results.json (or merged) files")
    parser.add_argument("--out", required=True, help="folder for merged.json, diff.md, diff.json, report.md, "
                                                     "report.html")
    parser.add_argument("--baseline", default=None, metavar="FILE|auto",
                        help="also diff against a baseline file, or `auto`: each environment's own baseline")
    parser.add_argument("--baselines", default=BASELINE_DIR, help=f"baseline folder for auto (default: {BASELINE_DIR})")
    parser.add_argument("--claims", default=DEFAULT_CLAIMS, help="page holding the docs' claims table")


def run(args: argparse.Namespace) -> int:
    """0: merged; 1: flaky cells, or gating changes against the baselines; 2: bad input."""
    for path in args.results:
        check_input_file(path, "results")
    if args.baseline not in (None, "auto"):
        check_input_file(args.baseline, "--baseline")
    check_input_file(args.claims, "--claims")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        check_output_dir(args.out, "--out")  # says: not a folder
    docs = {path: read_results(path) for path in args.results}  # every input checked before anything is written
    check_output_dir(args.out, "--out")
    observations, inputs = [], []
    for path in args.results:
        doc = docs[path]
        found = observations_of(doc, path)
        observations += found
        inputs.append({"path": portable_path(path), "complete": bool(doc.get("complete")), "interrupted": bool(doc.get("interrupted")),
                       "shard": doc.get("shard"), "cells": len(found),
                       "environments": sorted({obs.env.key for obs in found})})
    merged = merge(observations)
    os.makedirs(args.out, exist_ok=True)
    merged_path = os.path.join(args.out, "merged.json")
    atomic_write_json(merged_path, merged.document(inputs))

    sections = [(f"## {before.short} → {after.short}", changes)
                for before, after, changes in cross_env_changes(merged)]
    gate = bool(merged.flaky)
    print(f"merged {len(args.results)} file(s): {len(merged.cells)} cells in {len(merged.envs)} environment(s), "
          f"{len(merged.flaky)} flaky -> {merged_path}")
    for title, changes in sections:
        print(f"{title[3:]}: {summary(changes) or 'no change'}")
    if args.baseline:
        for key, path, changes in against_baselines(merged_path, args.baseline, args.baselines):
            if path is None:
                print(f"against baseline: none for {key} in {args.baselines}")
                continue
            sections.append((f"## {key} against {portable_path(path)}", changes))
            gate = gate or any(c.gating for c in changes)
            print(f"against baseline {portable_path(path)} ({key}): {summary(changes) or 'no change'}")
            for line in change_lines([c for c in changes if c.gating]):
                print("  " + line)
    for item in merged.flaky:
        print(f"FLAKY {item['id']} ({item['env']}): " + ", ".join(o["status"] for o in item["observations"]))
    _write_diff(args.out, merged, sections)
    _write_reports(args.out, merged_path, args.claims)
    return EXIT_REGRESSION if gate else 0


def _write_diff(folder: str, merged, sections) -> None:
    lines = ["# Diff", "", "Gating changes are in bold: new failures, changed failure kinds, fixes (to accept with "
             "`python -m harness update-baseline`) and flaky cells.", ""]
    if not sections:
        lines += ["Only one environment per device: nothing to compare.", ""]
    for title, changes in sections:
        lines += changes_lines(title, changes) + [""]
    if merged.flaky:
        lines += ["## Flaky", ""] + [f"- `{item['id']}` ({item['env']}): "
                                     + ", ".join(f"{o['status']} in {o['origin']}" for o in item["observations"])
                                     for item in merged.flaky] + [""]
    with open(os.path.join(folder, "diff.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    doc = {"sections": [{"title": title[3:], "changes": [c.to_json() for c in changes]} for title, changes in sections],
           "flaky": merged.flaky}
    atomic_write_json(os.path.join(folder, "diff.json"), doc)


def _write_reports(folder: str, merged_path: str, claims: str) -> None:
    from harness.report.render import render

    for fmt, name in (("markdown", "report.md"), ("html", "report.html")):
        text = render([merged_path], fmt, None, claims, "python -m harness merge")
        with open(os.path.join(folder, name), "w", encoding="utf-8") as fh:
            fh.write(text)
