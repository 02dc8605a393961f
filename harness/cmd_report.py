"""`python -m harness report`: the measured support table (Markdown, HTML or JSON) from results files."""

from __future__ import annotations

import argparse
import json
import os
import sys

from harness.report_claims import DEFAULT_CLAIMS, compare, read_claims
from harness.report_inputs import load_observations
from harness.report_merge import merge
from harness.report_model import build_table

FORMATS = ("markdown", "html", "json")


def add_parser(sub) -> None:
    """Register `report` and its options."""
    parser = sub.add_parser("report", help="render the support table from measured results")
    parser.add_argument("results", nargs="+", help="results.json, merged or baseline files")
    parser.add_argument("--format", choices=FORMATS, default="markdown", help="output format (default: markdown)")
    parser.add_argument("--out", default=None, help="write here instead of standard output")
    parser.add_argument("--source", default=None, help="only cells of this source (reference, transformers, user)")
    parser.add_argument("--claims", default=DEFAULT_CLAIMS,
                        help=f"page whose support table holds the docs' claims (default: {DEFAULT_CLAIMS})")


def run(args: argparse.Namespace) -> int:
    """Render the report; 0 on success, 2 on bad input."""
    text = render(args.results, args.format, args.source, args.claims, "python -m harness report")
    if args.out:
        folder = os.path.dirname(os.path.abspath(args.out))
        os.makedirs(folder, exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"report: {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def render(paths: list[str], fmt: str, source: str | None, claims_path: str, command: str) -> str:
    """The report text in one format."""
    merged = merge(load_observations(paths))
    table = build_table(merged, source)
    checks = compare(read_claims(claims_path), table)
    cells = [obs.cell for obs in merged.observations() if source is None or obs.cell["source"] == source]
    if fmt == "json":
        doc = {"generated_by": command, "table": table.to_json(), "claims": [c.to_json() for c in checks],
               "claims_source": claims_path, "flaky": merged.flaky}
        return json.dumps(doc, indent=1) + "\n"
    if fmt == "html":
        from harness.report_html import report_html

        return report_html(table, checks, claims_path, merged, source, command)
    from harness.report_markdown import report_markdown

    return report_markdown(table, checks, claims_path, cells, command)
