"""One cell's record in results.json as a type: what was measured, the docs' claim, and the verdict.

The schema of a cell record is this dataclass; results.json's `schema` number (results_json.SCHEMA_VERSION)
versions it. Records of schema 1 load through harness/results/migrate.py; anything else is refused with a
HarnessError naming the file and the key. `error` and `signals` stay JSON objects: their keys grow with what
the compiler reveals (README, "Results record").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.cells.cell import Cell, Expectation
from harness.errors import HarnessError
from harness.results.verdict import Judgement, Status, Verdict, judge

AXIS_FIELDS = ("source", "backend", "mode", "dtype", "fullgraph", "device", "shape", "layout", "scope", "phase")
# Axes a schema-1 record may lack (they arrived later), with the value they then had.
_USUAL = {"layout": "default", "scope": "kernel", "phase": "inference"}


@dataclass(frozen=True)
class CellRecord:
    """One cell of results.json: its axes, status, expectation, verdict, error, signals and repro command."""

    cell: Cell
    status: Status
    expected: Expectation
    judgement: Judgement
    error: dict[str, Any] | None = None
    signals: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    repro: str = ""
    recorded_id: str | None = None  # the id read back from a file; None for a record measured now

    @property
    def id(self) -> str:
        """The cell's id (as recorded: ids of older harnesses may lack an axis the record now carries)."""
        return self.recorded_id or self.cell.id

    @classmethod
    def measured(cls, cell: Cell, expected: Expectation, outcome: dict[str, Any], duration_s: float,
                 repro: str) -> CellRecord:
        """The record of an executor's outcome {status, error, signals}, judged against `expected`."""
        status, error, signals = Status(outcome["status"]), outcome.get("error"), outcome.get("signals") or {}
        judgement = judge(expected, status, error, signals.get("repeat_statuses") or ())
        return cls(cell, status, expected, judgement, error, signals, duration_s, repro)

    @classmethod
    def not_run(cls, cell: Cell, expected: Expectation, reason: str, repro: str) -> CellRecord:
        """The record of a cell this machine cannot run: status skipped, verdict not_applicable."""
        error = {"type": "NotApplicable", "message": reason, "phase": "selection"}
        return cls(cell, Status.SKIPPED, expected, judge(expected, Status.SKIPPED, error), error, {}, 0.0, repro)

    def to_json(self) -> dict[str, Any]:
        """The record as results.json stores it (key order as written since schema 1)."""
        return {"id": self.id, **self.cell.axis_values(), "status": self.status.value,
                "expected": self.expected.to_json(), "verdict": self.judgement.verdict.value,
                "verdict_reason": self.judgement.reason, "error": self.error, "signals": self.signals,
                "duration_s": round(self.duration_s, 3), "repro": self.repro}

    @classmethod
    def from_json(cls, doc: Any, *, file: str | None = None, key: str = "cell") -> CellRecord:
        """A record read back; a missing or wrong field is a HarnessError naming `file` and the key."""
        if not isinstance(doc, dict):
            raise HarnessError("must be an object", file=file, key=key)
        for name in ("id", "status", "expected", "verdict") + tuple(f for f in AXIS_FIELDS if f not in _USUAL):
            if name not in doc:
                raise HarnessError("missing field", file=file, key=f"{key}.{name}")
        status = _enum(Status, doc["status"], file, f"{key}.status")
        verdict = _enum(Verdict, doc["verdict"], file, f"{key}.verdict")
        cell = Cell(**{name: doc.get(name, _USUAL.get(name)) for name in AXIS_FIELDS})
        expected = doc["expected"] or {}
        if not isinstance(expected, dict) or "outcome" not in expected:
            raise HarnessError("must be an object with `outcome`", file=file, key=f"{key}.expected")
        statuses = expected.get("statuses")
        return cls(cell, status,
                   Expectation(expected["outcome"], tuple(statuses) if statuses else None, expected.get("error_match"),
                               expected.get("reason") or "", expected.get("rule_line")),
                   Judgement(verdict, doc.get("verdict_reason") or ""), doc.get("error"), doc.get("signals") or {},
                   float(doc.get("duration_s") or 0.0), doc.get("repro") or "", doc["id"])


def _enum(kind, value: Any, file: str | None, key: str):
    try:
        return kind(value)
    except ValueError:
        raise HarnessError(f"unknown {kind.__name__.lower()} {value!r}", file=file, key=key,
                           allowed=", ".join(sorted(member.value for member in kind))) from None
