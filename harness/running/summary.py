"""The terminal summary: counts per status and verdict, then one line per cell that needs attention."""

from __future__ import annotations

from typing import Any

from harness.results.results_json import summarize
from harness.measure.root_cause import describe


def summary_lines(cells: list[dict[str, Any]], results_path: str) -> list[str]:
    """Lines printed at the end of a run."""
    counts = summarize(cells)
    lines = [
        "status:  " + ", ".join(f"{name} {n}" for name, n in counts["status"].items()),
        "verdict: " + ", ".join(f"{name} {n}" for name, n in counts["verdict"].items()),
    ]
    na = [c for c in cells if c["verdict"] == "not_applicable"]
    if na:
        reasons = sorted({(c.get("error") or {}).get("message", "not run") for c in na})
        lines.append(f"not applicable: {len(na)} cells not run here ({'; '.join(reasons)})")
    by_id = sorted(cells, key=lambda c: c["id"])
    for label, verdict in (("REGRESSION", "regression"), ("FLAKY", "flaky"),
                           ("UNEXPECTED PASS", "unexpected_pass")):
        for cell in (c for c in by_id if c["verdict"] == verdict):
            lines.append(f"{label} {cell['id']}: {_why(cell)}")
    for cell in by_id:
        for degradation in (cell.get("signals") or {}).get("degraded") or []:
            lines.append(f"DEGRADED PASS {cell['id']}: {degradation}")
    lines.append(f"results: {results_path}")
    return lines


def _why(cell: dict[str, Any]) -> str:
    error = cell.get("error")
    text = cell.get("verdict_reason", "")
    if error:
        text += f" [{describe(error)}]"
    return text
