"""results.json: written atomically after every cell, so an interrupted run keeps its work; read back strictly."""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from collections import Counter
from typing import Any

from harness.errors import HarnessError
from harness.results.migrate import migrate_cells
from harness.portable import portable_json, portable_path
from harness.results.record import CellRecord
from harness.results.verdict import Status, Verdict

SCHEMA_VERSION = 2  # 2: backends named after their implementation (harness/results/migrate.py)
OLDEST_SCHEMA = 1  # still read, migrated to today's vocabulary on load
CELL_FIELDS = ("id", "source", "backend", "mode", "dtype", "fullgraph", "device", "shape", "status", "expected",
               "verdict", "error", "signals")


class ResultsWriter:
    """Accumulates cell records and rewrites `<out>/results.json` (temp file + rename) after each one.

    Nothing is written until the first cell of this run finishes: a run that runs nothing (a usage error, an
    interruption during start-up, `--collect-only`) leaves the previous results.json as it was.
    Each record is encoded once, when it is added: re-encoding every record on every rewrite made the
    writer quadratic in the number of cells (seconds of CPU per run, taken from the cells' executors).
    """

    def __init__(self, out_dir: str, environment: dict[str, Any], meta: dict[str, Any]):
        self.path = os.path.join(out_dir, "results.json")
        # No absolute path of this machine in the file (harness.portable): results travel between machines.
        self.environment, self.meta = portable_json(environment), _portable_meta(meta)
        self.cells: dict[str, dict[str, Any]] = {}
        self._encoded: dict[str, str] = {}
        self.started = _now()
        self.finished = 0  # cells of this run added with persist=True

    def add(self, record: CellRecord | dict[str, Any], *, persist: bool = True) -> None:
        """Record one cell (a record is not changed once added); persist unless told not to.

        `persist=False` is for records this run did not measure (kept from an earlier run, or not runnable
        here): they are written with the first cell that this run finishes.
        """
        record = portable_json(record.to_json() if isinstance(record, CellRecord) else record)
        self.cells[record["id"]] = record
        self._encoded[record["id"]] = _encode_nested(record, depth=2)
        if persist:
            self.finished += 1
            self.write(complete=False)

    def write(self, *, complete: bool, interrupted: bool = False) -> None:
        """Persist the document; `complete` is true only once every selected cell has finished."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        keys = sorted(self.cells)
        head = {
            "schema": SCHEMA_VERSION,
            "complete": complete,
            "interrupted": interrupted,
            "started": self.started,
            "updated": _now(),
            **self.meta,
            "environment": self.environment,
            "summary": summarize([self.cells[key] for key in keys]),
        }
        # The same text json.dump(doc, indent=1) gives, with "cells" last, built from the cached encodings.
        cells = "[]" if not keys else "[\n  " + ",\n  ".join(self._encoded[key] for key in keys) + "\n ]"
        atomic_write_text(self.path, json.dumps(head, indent=1)[:-2] + ',\n "cells": ' + cells + "\n}\n")


def _portable_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The run's meta fields without absolute paths (the matrix file as portable_path writes it)."""
    portable = portable_json(meta)
    if isinstance(meta.get("matrix"), str):
        portable["matrix"] = portable_path(meta["matrix"])
    return portable


def summarize(cells: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Counts per status and per verdict, every value of the vocabulary listed (zeros included)."""
    statuses = Counter(cell["status"] for cell in cells)
    verdicts = Counter(cell["verdict"] for cell in cells)
    return {"status": {s.value: statuses.get(s.value, 0) for s in Status},
            "verdict": {v.value: verdicts.get(v.value, 0) for v in Verdict},
            "total": len(cells)}


def atomic_write_json(path: str, doc: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename over `path`."""
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=False) + "\n")


def _encode_nested(value: Any, depth: int) -> str:
    """`value` as json.dumps(indent=1) writes it `depth` levels deep in a document (JSON text has no raw newlines)."""
    return json.dumps(value, indent=1).replace("\n", "\n" + " " * depth)


def atomic_write_text(path: str, text: str) -> None:
    """Write `text` to a temp file in the same folder, fsync, then rename over `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".results-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_results(path: str) -> dict[str, Any]:
    """Load and check a results file; any problem is a HarnessError naming the file and what is wrong."""
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise HarnessError("a results file is a JSON object", file=path)
    schema = doc.get("schema")
    if not isinstance(schema, int):
        raise HarnessError("missing or invalid schema version", file=path, key="schema")
    if schema > SCHEMA_VERSION:
        raise HarnessError(f"written by a newer harness (schema {schema}); this one reads schema "
                           f"{SCHEMA_VERSION}: upgrade the harness", file=path, key="schema")
    if schema < OLDEST_SCHEMA:
        raise HarnessError(f"schema {schema} is no longer supported (this harness reads schema {OLDEST_SCHEMA} to "
                           f"{SCHEMA_VERSION})", file=path, key="schema")
    for key in ("environment", "cells"):
        if key not in doc:
            raise HarnessError("missing field", file=path, key=key)
    if not isinstance(doc["cells"], list):
        raise HarnessError("must be a list", file=path, key="cells")
    for i, cell in enumerate(doc["cells"]):
        if not isinstance(cell, dict):
            raise HarnessError("must be an object", file=path, key=f"cells[{i}]")
        for field in CELL_FIELDS:
            if field not in cell:
                raise HarnessError("missing field", file=path, key=f"cells[{i}].{field}")
    doc["cells"] = migrate_cells(doc["cells"], schema)
    for i, cell in enumerate(doc["cells"]):
        CellRecord.from_json(cell, file=path, key=f"cells[{i}]")  # the typed record's checks: statuses, verdicts, ...
    return doc


def read_json(path: str) -> Any:
    """Parse a JSON file; unreadable or corrupt files become one HarnessError naming the file and line."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except OSError as exc:
        raise HarnessError(f"cannot read: {exc.strerror}", file=path) from None
    except json.JSONDecodeError as exc:
        raise HarnessError(f"not valid JSON (truncated or corrupt?): {exc.msg} at column {exc.colno}",
                           file=path, line=exc.lineno) from None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
