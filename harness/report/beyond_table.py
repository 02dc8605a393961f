"""What was measured outside the docs' table: other weight layouts, [T, E] routing, model scope, training,
and backends that could not run for a missing prerequisite. Reported beside the table, never inside it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.report.docs_table import in_claim_scope
from harness.environment.registered import DOCUMENTED
from harness.results.observations import Observation

_AREAS = (  # (name, test on a cell), first match wins
    ("whole model: load forms, runtime switch, compiled forward, generate()", lambda c: c.get("scope") == "model"),
    ("training: forward + backward, gradients against float64", lambda c: c.get("phase") == "training"),
    ("DeepSeek-V2 experts fed [T, E] router scores", lambda c: c.get("layout") == "deepseek_v2"),
    ("GPT-OSS experts (transposed weights, biases)", lambda c: c.get("layout") == "gpt_oss"),
    ("NemotronH experts (non-gated)", lambda c: c.get("layout") == "non_gated"),
)


@dataclass(frozen=True)
class AreaRow:
    """One area and implementation: how many cells ran, passed, and the commonest root causes of the rest."""

    area: str
    backend: str
    cells: int
    passed: int
    failures: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return dict(self.__dict__)


def area_of(cell: dict[str, Any]) -> str | None:
    """The area outside the docs' table a cell belongs to; None for the table's own cells."""
    if in_claim_scope(cell):
        return None
    return next((name for name, test in _AREAS if test(cell)), "other")


def beyond_rows(observations: list[Observation], source: str) -> list[AreaRow]:
    """Rows per (area, backend) for the measured cells of `source` outside the table's scope."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for obs in observations:
        if obs.cell["source"] == source and (area := area_of(obs.cell)) is not None:
            groups.setdefault((area, obs.cell["backend"]), []).append(obs.cell)
    order = [name for name, _ in _AREAS] + ["other"]
    rows = []
    for (area, backend), cells in sorted(groups.items(), key=lambda item: (
            order.index(item[0][0]), _backend_rank(item[0][1]))):
        passed = sum(cell["status"] == "pass" for cell in cells)
        rows.append(AreaRow(area, backend, len(cells), passed, _causes(cells)))
    return rows


def missing_prerequisites(skipped: list[dict[str, Any]], source: str) -> list[str]:
    """One sentence per backend that never ran because something it needs is not installed."""
    reasons: dict[str, str] = {}
    for cell in skipped:
        error = cell.get("error") or {}
        if cell.get("source") == source and error.get("type") == "MissingPrerequisite":
            reasons.setdefault(cell["backend"], " ".join(str(error.get("message", "")).split()))
    return [f"`{backend}` was not measured: {reason}" for backend, reason in sorted(reasons.items())]


def _backend_rank(backend: str) -> tuple[int, str]:
    return (DOCUMENTED.index(backend) if backend in DOCUMENTED else len(DOCUMENTED), backend)


def _causes(cells: list[dict[str, Any]], most: int = 2) -> tuple[str, ...]:
    """The commonest failure root causes, `status ×N: message (where)`."""
    counts: dict[tuple[str, str], int] = {}
    for cell in cells:
        if cell["status"] != "pass":
            error = cell.get("error") or {}
            text = " ".join(str(error.get("message") or error.get("type") or "").split())[:110]
            if error.get("where"):
                text += f" ({error['where']})"
            counts[(cell["status"], text)] = counts.get((cell["status"], text), 0) + 1
    top = sorted(counts.items(), key=lambda item: -item[1])[:most]
    return tuple(f"{status} ×{n}: {text}" for (status, text), n in top)
