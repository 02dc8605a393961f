"""Older results files in today's vocabulary: what changed between results schemas, as code.

Schema 1 (matrix schema 1, up to session 5) named transformers' backends after slices of the matrix:
`tf_grouped_mm`, `tf_grouped_mm_families`, `tf_grouped_mm_model`, `tf_grouped_mm_train`, `tf_deepgemm`...
Schema 2 names every backend after its implementation (`grouped_mm` of source `transformers`), so a cell's id
is `transformers-grouped_mm-...`. Nothing measured changes: reading a schema-1 file renames the backend and
rebuilds the id from the cell's own axis values.
"""

from __future__ import annotations

import re
from typing import Any

_TF_ALIAS = re.compile(r"^tf_(?P<impl>.+?)(?:_families|_model|_train)?$")


def migrate_cells(cells: list[dict[str, Any]], schema: int) -> list[dict[str, Any]]:
    """The cells of a results file of `schema` in the current vocabulary (new dicts; the input is unchanged)."""
    if schema >= 2:
        return cells
    return [_cell_v1(cell) for cell in cells]


def _cell_v1(cell: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(cell, dict) or cell.get("source") != "transformers":
        return cell
    match = _TF_ALIAS.match(str(cell.get("backend", "")))
    if match is None:
        return cell
    backend = match.group("impl")
    old_prefix = f"transformers-{cell['backend']}-"
    new = dict(cell, backend=backend)
    if isinstance(cell.get("id"), str) and cell["id"].startswith(old_prefix):
        new["id"] = f"transformers-{backend}-" + cell["id"][len(old_prefix):]
    if isinstance(cell.get("repro"), str):
        new["repro"] = cell["repro"].replace(cell["id"], new["id"])
    return new
