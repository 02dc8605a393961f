"""`python -m harness repro CELL_ID`: write a standalone script that reruns one cell (torch, + transformers)."""

from __future__ import annotations

import argparse
import os
import sys

from harness.cells.cell import expand_cells
from harness.errors import HarnessError
from harness.config.load import load_matrix
from harness.results.observations import load_observations
from harness.cli.usage import check_input_file, check_output_file


def add_parser(sub) -> None:
    """Register `repro` and its options."""
    parser = sub.add_parser("repro", help="write a standalone reproduction script for one cell")
    parser.add_argument("cell_id", metavar="CELL_ID", help="the cell's id (as in results.json)")
    parser.add_argument("--matrix", default="matrix.yaml", help="matrix file that defines the cell")
    parser.add_argument("--results", action="append", default=[],
                        help="results file(s) that observed the cell: its outcome goes into the script's header")
    parser.add_argument("--out", default=None, help="script path (default: repro_<CELL_ID>.py; - for stdout)")


def run(args: argparse.Namespace) -> int:
    """Write the script; 0 on success, 2 when the cell or an input is unknown."""
    from harness.repro.script import script

    check_input_file(args.matrix, "--matrix")
    for path in args.results:
        check_input_file(path, "--results")
    if args.out not in (None, "-"):
        check_output_file(args.out, "--out")
    matrix = load_matrix(args.matrix, import_backends=False)
    cells = {cell.id: cell for cell in expand_cells(matrix)}
    cell = cells.get(args.cell_id)
    if cell is None:
        raise HarnessError(f"no cell with id {args.cell_id!r} in {args.matrix}", key="CELL_ID")
    observed = env = None
    beside = args.results[0] if args.results else None
    if args.results:
        found = [obs for obs in load_observations(args.results) if obs.id == cell.id]
        failing = [obs for obs in found if obs.cell["status"] != "pass"] or found
        if failing:
            observed, env, beside = failing[0].cell, failing[0].env.label, failing[0].origin
    text = script(matrix, cell, observed, env)
    if args.out == "-":
        sys.stdout.write(text)
        return 0
    path = args.out or default_path(cell.id, beside)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, 0o755)
    print(f"repro: wrote {path} ({len(text.splitlines())} lines; run: python {path})")
    return 0


def default_path(cell_id: str, results: str | None) -> str:
    """Beside the results file (<its folder>/repro/repro_<id>.py), else ./repro_<id>.py as an absolute path."""
    name = f"repro_{cell_id}.py"
    if results:
        return os.path.join(os.path.dirname(results) or ".", "repro", name)
    return os.path.abspath(name)
