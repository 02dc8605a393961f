"""What the HTML report says about one cell: its category (legend), its root cause, and the commands that rerun it."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from harness.config.matrix import CUDAGRAPH_MODES
from harness.report.html.select import keyword_expression
from harness.results.merge import flaky_outcomes, is_flaky


@dataclass(frozen=True)
class Category:
    """One legend entry: a class name, the symbol shown in the grid, a short label and what it means."""

    name: str
    symbol: str
    label: str
    text: str
    gating: bool = False


# Legend order: what gates first, then failures the docs or the matrix explain, then passes.
CATEGORIES = (
    Category("regression", "✗!", "regression", "fails although the docs claim it works", True),
    Category("unexpected_pass", "✓!", "unexpected pass", "passes although the docs say it fails", True),
    Category("flaky", "~", "flaky", "repeated runs disagree", True),
    Category("documented", "✗", "fails as documented", "the docs say it fails (reason in the tooltip)"),
    Category("undocumented", "?", "undocumented behaviour", "fails where the docs say nothing: observed, not judged"),
    Category("observed_pass", "✓?", "undocumented, passes", "passes where the docs say nothing: observed, not judged"),
    Category("not_claimed", "✓°", "CPU-only, not claimed", "passes in a CUDA-graph mode off CUDA, where no CUDA "
                                                           "graph exists: says nothing about the docs' CUDA-graph claims"),
    Category("degraded", "✓*", "passes, degraded", "recompile storm, or CUDA graphs skipped / not launched"),
    Category("ok", "✓", "passes", "as the docs claim"),
)
BY_NAME = {c.name: c for c in CATEGORIES}
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:e[-+]?\d+)?")
_HEX = re.compile(r"0x[0-9a-fA-F]+")


def category(cell: dict[str, Any]) -> str:
    """The legend category of a measured cell (see CATEGORIES)."""
    if is_flaky(cell):
        return "flaky"
    verdict, passed = cell.get("verdict"), cell["status"] == "pass"
    if verdict in ("regression", "unexpected_pass"):
        return verdict
    observe = (cell.get("expected") or {}).get("outcome") == "observe"
    if not passed:
        return "undocumented" if observe else "documented"
    if observe:
        return "observed_pass"
    if (cell.get("signals") or {}).get("degraded"):
        return "degraded"
    if cell.get("device") != "cuda" and cell.get("mode") in CUDAGRAPH_MODES:
        return "not_claimed"
    return "ok"


def normalise(text: Any) -> str:
    """One line with numbers and hexadecimal ids replaced, so that messages differing only in them compare equal."""
    return _NUMBER.sub("N", _HEX.sub("<hex>", " ".join(str(text or "").split())))


def where_text(error: dict[str, Any] | None) -> str:
    """The error's innermost frame of the code under test (`where`), as one line; empty when not recorded."""
    where = (error or {}).get("where")
    if not where:
        return ""
    if isinstance(where, dict):
        place = ":".join(str(where[k]) for k in ("file", "line") if where.get(k) is not None)
        name = where.get("function") or where.get("name")
        return " ".join(x for x in (place, f"in {name}" if name else "") if x) or str(where)
    return " ".join(str(where).split())


def cause_key(cell: dict[str, Any]) -> tuple:
    """Cells with equal keys fail for the same root cause: category, status, error type, normalised message and
    frame, and the documented reason (or the verdict's) that makes it count."""
    error = cell.get("error") or {}
    cat = category(cell)
    if cat == "flaky":
        statuses = "/".join(sorted({o["status"] for o in flaky_outcomes(cell)}))
        return (cat, statuses, "", "", "", "")
    reason = (cell.get("expected") or {}).get("reason") if cat != "regression" else cell.get("verdict_reason")
    return (cat, cell["status"], error.get("type") or "", normalise(error.get("message"))[:300],
            normalise(where_text(error)), normalise(reason))


@dataclass
class Cause:
    """Cells that share a root cause, with one example's raw text for display."""

    key: tuple
    cells: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (environment label, cell)

    @property
    def example(self) -> dict[str, Any]:
        """The first cell of the group."""
        return self.cells[0][1]

    @property
    def ids(self) -> list[str]:
        """Distinct cell ids, sorted."""
        return sorted({cell["id"] for _, cell in self.cells})


def group_causes(cells: list[tuple[str, dict[str, Any]]]) -> list[Cause]:
    """Group (environment label, cell) pairs by root cause; biggest group first, then by category order."""
    groups: dict[tuple, Cause] = {}
    for env, cell in cells:
        key = cause_key(cell)
        groups.setdefault(key, Cause(key)).cells.append((env, cell))
    order = [c.name for c in CATEGORIES]
    return sorted(groups.values(), key=lambda g: (order.index(g.key[0]), -len(g.cells), g.key))


def rerun_command(cells: list[dict[str, Any]], known_ids: set[str] | None = None) -> str:
    """The recorded rerun command (plugin's `repro_command`, in each record's `repro`) widened to every given
    cell: one `--cell ID` per distinct id, the repository's own matrix left to its default; with `known_ids`, a
    short `-k` expression instead when one selects exactly these cells among the known ones."""
    ids = sorted({cell["id"] for cell in cells})
    natural = {str(value) for cell in cells for value in cell.values() if isinstance(value, str) and len(value) < 40}
    keyword = keyword_expression(ids, known_ids, natural) if known_ids and len(ids) > 1 else None
    words = shlex.split(cells[0].get("repro") or "") or ["python", "-m", "harness", "run"]
    out, i = [], 0
    while i < len(words):
        if words[i] == "--cell" or (words[i] == "--matrix" and _default_matrix(words[i + 1: i + 2])):
            i += 2
            continue
        out.append(words[i])
        i += 1
    for cell_id in ([] if keyword else ids):
        out += ["--cell", cell_id]
    return " ".join(shlex.quote(word) for word in out + (["-k", keyword] if keyword else []))


def repro_script_command(cell: dict[str, Any]) -> str:
    """The `repro` command that writes this cell's standalone script (same matrix as its rerun command)."""
    words = shlex.split(cell.get("repro") or "")
    matrix = words[words.index("--matrix") + 1] if "--matrix" in words[:-1] else None
    if _default_matrix([matrix] if matrix else []):
        matrix = None
    command = ["python", "-m", "harness", "repro", cell["id"]] + (["--matrix", matrix] if matrix else [])
    return " ".join(shlex.quote(word) for word in command + ["--out", "repro.py"])


def anchor(env_key: str, cell_id: str) -> str:
    """A safe fragment id for a cell of an environment."""
    return "c-" + re.sub(r"[^A-Za-z0-9_.-]", "_", f"{env_key}--{cell_id}")


def _default_matrix(value: list[str]) -> bool:
    # The repository's own matrix (`run`'s default), recorded relative or absolute on the runner: left out.
    return bool(value) and (value[0] == "matrix.yaml" or (os.path.isabs(value[0])
                                                         and os.path.basename(value[0]) == "matrix.yaml"))
