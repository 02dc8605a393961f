"""What the executor needs to run one cell: a typed CellSpec, sent as JSON over the executor's pipe.

The measuring code (harness/measure/) reads the JSON form (`spec["cell"]["mode"]`, ...): the repro scripts paste
that code and fold those lookups to the cell's values, so the wire form is the dict `to_json()` gives.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from harness.cells.cell import Cell
from harness.config.matrix import Matrix, Shape


@dataclass(frozen=True)
class CellSpec:
    """One cell with everything that decides how it runs: backend function, shape, tolerance, seed."""

    cell: Cell
    impl: str | None  # dotted `package.module:function`; None for transformers (dispatched by the backend's name)
    shape: Shape
    tolerance: float
    max_recompiles: int
    seed: int

    @classmethod
    def of(cls, matrix: Matrix, cell: Cell) -> CellSpec:
        """The spec of `cell` in `matrix`; the seed comes from the id, so a cell sees the same inputs in every run
        and on every worker."""
        return cls(cell, matrix.backends[(cell.source, cell.backend)].impl, matrix.shapes[cell.shape],
                   matrix.tolerances.get(cell.dtype, 1e-2), matrix.max_recompiles,
                   zlib.crc32(cell.id.encode()) % 100_000)

    def to_json(self) -> dict[str, Any]:
        """The wire form the executor reads."""
        shape = self.shape
        return {
            "cell": self.cell.axis_values(), "impl": self.impl,
            "shape": {"tokens": list(shape.tokens), "hidden": shape.hidden, "intermediate": shape.intermediate,
                      "experts": shape.experts, "top_k": shape.top_k, "routing": shape.routing},
            "tolerance": self.tolerance, "max_recompiles": self.max_recompiles, "seed": self.seed,
        }


def cell_spec(matrix: Matrix, cell: Cell) -> dict[str, Any]:
    """The JSON spec the executor needs to run one cell (CellSpec.of(matrix, cell).to_json())."""
    return CellSpec.of(matrix, cell).to_json()
