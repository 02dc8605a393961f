"""`python -m harness report`: the measured support table (Markdown, HTML or JSON) from results files."""

from __future__ import annotations

import argparse
import json
import os
import sys

from harness.results.baseline import BASELINE_DIR
from harness.report.beyond_table import beyond_rows, missing_prerequisites
from harness.report.docs_table import build_docs_table, default_source
from harness.report.claims import DEFAULT_CLAIMS, compare, read_claims
from harness.report.html.inputs import skipped_cells
from harness.results.observations import load_observations
from harness.results.merge import merge

FORMATS = ("markdown", "html", "json")


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


def render(paths: list[str], fmt: str, source: str | None, claims_path: str, command: str, *,
           baseline: str | None = None, baselines: str = BASELINE_DIR) -> str:
    """The report text in one format (the HTML page also compares with `baseline` when given)."""
    merged = merge(load_observations(paths))
    source = source or default_source(merged)
    table = build_docs_table(merged, source)
    checks = compare(read_claims(claims_path), table)
    cells = [obs.cell for obs in merged.observations() if obs.cell["source"] == source]
    beyond = beyond_rows(merged.observations(), source)
    missing = missing_prerequisites([cell for _, cell in skipped_cells(paths)], source)
    if fmt == "json":
        doc = {"generated_by": command, "table": table.to_json(), "claims": [c.to_json() for c in checks],
               "beyond_table": [row.to_json() for row in beyond], "missing_prerequisites": missing,
               "claims_source": claims_path, "flaky": merged.flaky}
        return json.dumps(doc, indent=1) + "\n"
    if fmt == "html":
        from harness.report.html.page import report_html
        from harness.report.html.inputs import baseline_checks

        compared = baseline_checks(paths, merged, baseline, baselines) if baseline else None
        return report_html(table, checks, claims_path, merged, source, command, skipped=skipped_cells(paths),
                           baseline=compared, results=paths)
    from harness.report.markdown import report_markdown

    return report_markdown(table, checks, claims_path, cells, command, beyond, missing)

