"""`python -m harness docs --update|--check PAGE [RESULTS...]`: keep a docs page's support table measured."""

from __future__ import annotations

import argparse
import difflib
import glob
import os

from harness.results.baseline import BASELINE_DIR
from harness.errors import EXIT_REGRESSION, HarnessError
from harness.report.docs_prose import contradictions
from harness.report.docs_table import build_docs_table, default_source
from harness.report.docs_block import block_span, current_block, read_page, replace_block, same_block
from harness.results.observations import load_observations
from harness.report.markdown import table_lines
from harness.results.merge import merge

# The same command line in --update and --check, so that the generated-by line never drifts by itself.
GENERATOR = "python -m harness docs --update"


def add_parser(sub) -> None:
    """Register `docs` and its options."""
    parser = sub.add_parser("docs", help="update or check the measured table between the compile-matrix markers")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--update", metavar="PAGE", help="rewrite the table in PAGE")
    action.add_argument("--check", metavar="PAGE", help="exit 1 when PAGE's table differs from the measurement")
    parser.add_argument("results", nargs="*",
                        help=f"results, merged or baseline files (default: every {BASELINE_DIR}/*.json)")
    parser.add_argument("--baselines", default=BASELINE_DIR, help=f"baseline folder (default: {BASELINE_DIR})")
    parser.add_argument("--source", default=None,
                        help="whose table: transformers (default when measured), reference or user")


def run(args: argparse.Namespace) -> int:
    """0: page updated or up to date; 1: --check found drift; 2: bad input."""
    paths = args.results or sorted(glob.glob(os.path.join(args.baselines, "*.json")))
    if not paths:
        raise HarnessError(f"no results given and no baseline in {args.baselines}", key="results")
    merged = merge(load_observations(paths))
    table = build_docs_table(merged, args.source or default_source(merged))
    block = "\n".join(table_lines(table, GENERATOR))
    page = args.update or args.check
    text = read_page(page)
    old = current_block(text, page)
    for found in contradictions(text, block_span(text, page), table):
        print(f"docs: prose outside the markers contradicts the table: {found.render(page)}")
    if args.check:
        if same_block(old, block):
            print(f"docs: {page} matches the measurement ({len(paths)} file(s))")
            return 0
        diff = difflib.unified_diff(old.strip("\n").splitlines(), block.splitlines(), f"{page} (page)",
                                    "measured", lineterm="")
        print("\n".join(diff))
        print(f"docs: {page} differs from the measurement; fix: " + " ".join([GENERATOR, page, *args.results]))
        return EXIT_REGRESSION
    if same_block(old, block):
        print(f"docs: {page} already up to date")
        return 0
    with open(page, "w", encoding="utf-8") as fh:
        fh.write(replace_block(text, block, page))
    print(f"docs: updated the table in {page}")
    return 0
