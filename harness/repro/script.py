"""A standalone script that reruns one cell with only torch (and transformers) installed: what a bug report needs.

Every kind of cell has one: kernel inference and training (harness/repro/kernel.py), model scope
(harness/repro/model.py). The script is the harness's own code (backends/, harness/), inlined by
harness/repro/source.py and folded to the cell by harness/repro/specialise.py: only the cell's layout, device
and oracle branch, one import block. It prints the versions (Python, OS, torch, transformers, GPU) and the
observed vs expected outcome, and exits 1 with the traceback when the failure reproduces, 0 when everything
passes. A user backend is imported by its dotted path (it is the user's code).
"""

from __future__ import annotations

from typing import Any

from harness.cells.cell import Cell
from harness.cells.spec import cell_spec
from harness.errors import HarnessError
from harness.config.matrix import Matrix

_WIDTH = 116


def script(matrix: Matrix, cell: Cell, observed: dict[str, Any] | None = None, env_label: str | None = None) -> str:
    """The text of the standalone reproduction script of `cell`."""
    spec = cell_spec(matrix, cell)
    if cell.scope == "model":  # as harness/measure/cell_run.py: scope decides before phase
        if cell.source != "transformers":
            raise HarnessError(f"{cell.id}: model-scope cells run transformers backends only (a whole transformers "
                               f"model); this one is {cell.source}", key="CELL_ID")
        from harness.repro.model import model_script

        body = model_script(spec)
    elif cell.scope == "kernel":
        from harness.repro.kernel import kernel_script

        body = kernel_script(spec)
    else:
        raise HarnessError(f"{cell.id}: no repro script for scope {cell.scope!r}", key="CELL_ID")
    text = body.text()
    # The cell's axis values, for tools that drive the script (harness/history/bisect_driver.py reads them).
    line = f"CELL = {spec['cell']!r}\n"
    at = text.rfind("\nif __name__ ==")
    text = text[:at + 1] + line + text[at + 1:] if at >= 0 else text + line
    return header(cell, spec, observed, env_label) + "\n" + text


def header(cell: Cell, spec: dict[str, Any], observed: dict[str, Any] | None, env_label: str | None) -> str:
    """The docstring: which cell (its id says backend, mode, dtype, device, shape, layout), what the harness
    observed, how to run the script."""
    lines = [f"Compile-matrix cell {cell.id}, from `python -m harness repro`."]
    if observed:
        error = observed.get("error") or {}
        seen = observed["status"] + (f": {error.get('type')}: {error.get('message')}" if error else "")
        seen += "".join(f"; degraded: {d}" for d in (observed.get("signals") or {}).get("degraded") or [])
        lines.append(_first(f"Observed by the harness{f' ({env_label})' if env_label else ''}: {seen}"))
    if cell.source == "transformers":
        needs = "torch and transformers; PYTHONPATH=CHECKOUT/src tests a checkout"
    elif spec["impl"].startswith("backends.reference:"):
        needs = "torch only"
    else:
        needs = "torch and the backend's package"
    lines.append(f"Run `python THIS_FILE` ({needs}): exit 1 and the traceback if the failure reproduces, "
                 "0 if all passes.")
    text = "\n".join(_wrap(line) for line in lines).replace('"""', "'''").replace("\\", "\\\\")
    return f'"""{text}\n"""\n'


def _first(text: str) -> str:
    """The first line of `text`, at most two header lines long."""
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return line if len(line) <= 2 * _WIDTH - 10 else line[:2 * _WIDTH - 13] + "..."


def _wrap(line: str) -> str:
    """Wrap a header line at word boundaries."""
    out, current = [], ""
    for word in line.split(" "):
        if current and len(current) + 1 + len(word) > _WIDTH:
            out.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    return "\n".join(out + [current])
