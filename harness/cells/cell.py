"""Expand a Matrix into cells (one per pytest item) and attach each cell's expectation."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from harness.config.matrix import Matrix, Rule, admitted_points
from harness.config.vocabulary import AXES, OPTIONAL_AXES
from harness.environment.registered import DOCUMENTED


@dataclass(frozen=True)
class Expectation:
    """What the documentation (as encoded in matrix.yaml) says a cell should do."""

    expect: str  # "pass" | "fail" | "observe"
    statuses: tuple[str, ...] | None = None
    error_match: str | None = None
    reason: str = "docs: all three backends are compatible with torch.compile (no rule restricts this cell)"
    rule_line: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The `expected` field of results.json."""
        return {"outcome": self.expect, "statuses": list(self.statuses) if self.statuses else None,
                "error_match": self.error_match, "reason": self.reason, "rule_line": self.rule_line}


@dataclass(frozen=True)
class Cell:
    """One point of the matrix: a backend run in one compile mode, dtype, fullgraph, device, shape, layout."""

    source: str
    backend: str
    mode: str
    dtype: str
    fullgraph: bool | None  # None for `uncompiled`, where fullgraph means nothing
    device: str
    shape: str
    layout: str = "default"
    scope: str = "kernel"
    phase: str = "inference"

    @property
    def id(self) -> str:
        """Readable pytest id, e.g. reference-grouped_mm-default-bfloat16-fullgraph-cpu-prefill."""
        parts = [self.source, self.backend]
        for axis in AXES:  # in vocabulary order; an optional axis shows up only when it differs from its usual value
            value = getattr(self, axis)
            if axis == "fullgraph":
                if value is not None:
                    parts.append("fullgraph" if value else "breaks-allowed")
            elif axis not in OPTIONAL_AXES or value != OPTIONAL_AXES[axis][0]:
                parts.append(value)
        return "-".join(parts)

    def axis_values(self) -> dict[str, Any]:
        """The cell's value on every axis a rule can name."""
        # Not dataclasses.asdict: it deep-copies, and matrix loading calls this ~30k times.
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = tuple(field.name for field in fields(Cell))
# The axes are declared once (config/vocabulary.py); Cell's fields follow them in order.
assert _FIELDS == ("source", "backend") + AXES, f"Cell's fields {_FIELDS} do not follow AXES {AXES}"


def expand_cells(matrix: Matrix) -> list[Cell]:
    """Every cell some slice admits, in a stable order (backends in file order, then the axes)."""
    return [Cell(backend.source, backend.name, *values) for backend, values in admitted_points(matrix)]


# Axes in run order: the ones a compiled graph does not depend on vary fastest (see run_order).
_RUN_ORDER_AXES = ("device", "dtype", "shape", "layout", "scope", "phase", "mode", "fullgraph")


def run_order(matrix: Matrix, cells: list[Cell]) -> list[Cell]:
    """`cells` reordered so that cells compiling the same graphs run back to back.

    Per backend (file order), cells differing only in mode and fullgraph come together: they trace the same
    graphs, and default/reduce-overhead (max-autotune/-no-cudagraphs) generate the same CPU kernels, so a
    worker running them in a row finds the kernels the previous cell built in the inductor cache instead of
    compiling them concurrently with another worker. Results do not depend on the order (each cell starts
    from a reset compiler), only the time does.
    """
    backend_rank = {key: rank for rank, key in enumerate(matrix.backends)}
    value_rank = {axis: {value: rank for rank, value in enumerate(matrix.axes[axis])} for axis in _RUN_ORDER_AXES}
    value_rank["fullgraph"][None] = -1  # uncompiled control cells first in their group

    def key(cell: Cell) -> tuple[int, ...]:
        return (backend_rank[(cell.source, cell.backend)],
                *(value_rank[axis][getattr(cell, axis)] for axis in _RUN_ORDER_AXES))

    return sorted(cells, key=key)


def expectation_for(cell: Cell, rules: tuple[Rule, ...], capability: tuple[int, int] | None = None) -> Expectation:
    """The claim of the last matching rule (rules are read in file order), or the default.

    The default is `pass` for the documented implementations and for every backend a rule names; a backend
    that transformers registers and no rule names is observed (reported, not judged) until a rule speaks for it.
    `capability` is this machine's CUDA compute capability; rules with a condition on it apply to cuda cells
    only when it is known and satisfied.
    """
    values = cell.axis_values()
    cap = capability if cell.device == "cuda" else None
    for rule in reversed(rules):
        if rule.matches(values, cap):
            return Expectation(rule.expect, rule.statuses, rule.error_match, rule.reason, rule.line)
    if cell.source == "transformers" and cell.backend not in DOCUMENTED and not any(
            cell.backend in dict(rule.match).get("backend", ()) for rule in rules):
        return Expectation("observe", reason=f"undocumented: transformers registers {cell.backend!r} in its "
                                             "ExpertsInterface and no rule of matrix.yaml speaks for it")
    return Expectation("pass")
