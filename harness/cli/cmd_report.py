"""`python -m harness report`: the measured support table (Markdown, HTML or JSON) from results files."""

from __future__ import annotations

import argparse
import os
import sys

from harness.report.claims import DEFAULT_CLAIMS
from harness.report.render import RENDERERS, render
from harness.results.baseline import BASELINE_DIR

FORMATS = tuple(RENDERERS)


def add_parser(sub) -> None:
    """Register `report` and its options."""
    parser = sub.add_parser("report", help="render the support table from measured results")
    parser.add_argument("results", nargs="+", help="results.json, merged or baseline files")
    parser.add_argument("--format", choices=FORMATS, default="markdown", help="output format (default: markdown)")
    parser.add_argument("--out", default=None, help="write here instead of standard output")
    parser.add_argument("--source", default=None,
                        help="whose table: transformers (default when measured), reference or user")
    parser.add_argument("--claims", default=DEFAULT_CLAIMS,
                        help=f"page whose support table holds the docs' claims (default: {DEFAULT_CLAIMS})")
    parser.add_argument("--baseline", default=None, metavar="FILE|auto",
                        help="html: also show what changed against a baseline (auto: each environment's own)")
    parser.add_argument("--baselines", default=BASELINE_DIR, help=f"baseline folder for auto (default: {BASELINE_DIR})")


def run(args: argparse.Namespace) -> int:
    """Render the report; 0 on success, 2 on bad input."""
    text = render(args.results, args.format, args.source, args.claims, "python -m harness report",
                  baseline=args.baseline, baselines=args.baselines)
    if args.out:
        folder = os.path.dirname(os.path.abspath(args.out))
        os.makedirs(folder, exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"report: {args.out}")
    else:
        sys.stdout.write(text)
    return 0
