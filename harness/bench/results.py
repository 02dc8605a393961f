"""bench-<device>.json: one benchmark run's configuration, ceilings, items and points, rewritten after each point."""

from __future__ import annotations

import datetime as _dt
import os
import re
from typing import Any

from harness.errors import HarnessError
from harness.results.results_json import atomic_write_json, read_json

SCHEMA = "bench/2"  # bench/1 named a backend `source:name` (points also `name`); it migrates on load
TAG = re.compile(r"[A-Za-z0-9_]+")
_FILE = re.compile(r"bench-(cpu|cuda)(?:-[A-Za-z0-9_]+)?\.json")
POINT_STATUSES = ("ok", "error", "oom", "skipped")


def results_path(out_dir: str, device: str, tag: str | None = None) -> str:
    """Where a run on `device` writes its results: bench-<device>.json, or bench-<device>-<tag>.json."""
    return os.path.join(out_dir, f"bench-{device}{'-' + tag if tag else ''}.json")


class BenchRecorder:
    """Holds the run's document and persists it atomically after every change (an interrupted run keeps its work)."""

    def __init__(self, path: str, header: dict[str, Any]):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self.doc = {"schema": SCHEMA, "complete": False, "interrupted": False, "started": _now(), "updated": None,
                    **header, "items": [], "points": []}
        self.write()

    def set(self, key: str, value: Any) -> None:
        """Set a top-level field and persist."""
        self.doc[key] = value
        self.write()

    def add_point(self, point: dict[str, Any]) -> None:
        """Record one (item, token count) measurement and persist."""
        self.doc["points"].append(point)
        self.write()

    def add_item(self, item: dict[str, Any]) -> None:
        """Record one finished or skipped item and persist."""
        self.doc["items"].append(item)
        self.write()

    def write(self) -> None:
        """Rewrite the file (temp file + rename)."""
        self.doc["updated"] = _now()
        atomic_write_json(self.path, self.doc)


def load_bench(path: str) -> dict[str, Any]:
    """Read and check one results file; problems are HarnessErrors naming the file."""
    doc = read_json(path)
    if isinstance(doc, dict) and doc.get("schema") == "bench/1":
        doc = from_bench_1(doc)
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise HarnessError(f"not a benchmark results file (schema {SCHEMA!r} or 'bench/1' expected)", file=path,
                           key="schema")
    for key in ("device", "config", "environment", "points", "items"):
        if key not in doc:
            raise HarnessError("missing field", file=path, key=key)
    for index, point in enumerate(doc["points"]):
        missing = [key for key in ("shape", "dtype", "source", "backend", "mode", "tokens", "status")
                   if key not in point]
        if missing or point["status"] not in POINT_STATUSES:
            raise HarnessError(f"point {index} is malformed (missing {missing} or bad status)", file=path,
                               key="points")
    return doc


def from_bench_1(doc: dict[str, Any]) -> dict[str, Any]:
    """A bench/1 document in bench/2's words: `source:name` becomes `source` and `backend` on points and items
    (as cells have them), `source-name` in the configuration (as cell ids begin); the measurements are untouched."""
    def split(record: dict[str, Any]) -> dict[str, Any]:
        if ":" not in str(record.get("backend", "")):
            return record
        source, backend = record["backend"].split(":", 1)
        out = {key: value for key, value in record.items() if key not in ("backend", "source", "name")}
        return {**{k: out.pop(k) for k in ("shape", "dtype") if k in out}, "source": source, "backend": backend, **out}

    config = dict(doc.get("config") or {})
    config["backends"] = [str(b).replace(":", "-", 1) for b in config.get("backends", [])]
    return {**doc, "schema": SCHEMA, "config": config, "points": [split(p) for p in doc.get("points", [])],
            "items": [split(i) for i in doc.get("items", [])]}


def find_results(folder: str) -> dict[str, list[str]]:
    """device -> paths of its bench-<device>[-<tag>].json files in `folder` (untagged first, then by name)."""
    if not os.path.isdir(folder):
        raise HarnessError("no such folder", file=folder)
    found: dict[str, list[str]] = {}
    for name in sorted(os.listdir(folder), key=lambda name: (name.count("-"), name)):
        match = _FILE.fullmatch(name)
        if match:
            found.setdefault(match.group(1), []).append(os.path.join(folder, name))
    if not found:
        raise HarnessError("no bench-cpu*.json or bench-cuda*.json here", file=folder)
    return found


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
