"""The history: per environment (torch, device) a release x cell table of statuses, and where each cell changed.

Input: a sweep folder (harness/history/sweep.py). A cell's *state* in a release is its status plus its failure
reason (error type and root-cause message with numbers blanked, so "error 0.031 > tolerance" and "error 0.029 >
tolerance" are one reason); a change point is a release whose state differs from the previous release's. A cell
absent from a release's results is `not_applicable`, with why: the release registers no such backend, or the
pair did not run.
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from harness.history.releases import key as release_key
from harness.history.sweep import read_sweep

NOT_APPLICABLE = "not_applicable"
# Axes a row label may show, in the order a reader groups by: implementation, dtype, mode first.
LABEL_AXES = ("backend", "dtype", "mode", "fullgraph", "shape", "layout", "device", "scope", "phase")
# Row labels name transformers' family rather than the layout value (harness/sources/families.py).
LAYOUT_NAMES = {"default": "Qwen2-MoE", "gpt_oss": "GPT-OSS", "non_gated": "NemotronH",
                "deepseek_v2": "DeepSeek-V2 [T,E] weights"}
_NUMBER = re.compile(r"(?<![A-Za-z_])[-+]?\d+(\.\d+)?(e[-+]?\d+)?")


@dataclass
class Entry:
    """One cell in one release."""

    status: str
    message: str = ""  # the root cause's message in one line ("" for a pass)
    error_type: str = ""
    where: str = ""  # the innermost frame of the code under test (not compared: line numbers move)

    @property
    def cause(self) -> str:
        """The root cause as shown: message (where)."""
        return f"{self.message} ({self.where})" if self.where else self.message

    @property
    def reason(self) -> str:
        """The failure reason as compared between releases (numbers blanked, frame left out)."""
        return "" if self.status == "pass" else f"{self.error_type}: {_NUMBER.sub('#', self.message)}"

    @property
    def state(self) -> tuple[str, str]:
        """What must stay equal for a cell not to have changed."""
        return self.status, self.reason


@dataclass
class Change:
    """A cell whose state in `release` differs from the previous release's."""

    release: str
    previous: str
    cell: str
    before: Entry
    after: Entry


@dataclass
class History:
    """One environment's table: releases (columns), cells (rows), entries, and the change points."""

    torch: str
    device: str
    releases: list[str]
    cells: dict[str, dict[str, Any]]  # id -> axis values
    entries: dict[str, dict[str, Entry]]  # id -> release -> entry
    changes: list[Change] = field(default_factory=list)
    label_axes: tuple[str, ...] = ()

    def label(self, cell_id: str, skip: tuple[str, ...] = ()) -> str:
        """The row's name: the axes that vary in this table, e.g. 'grouped_mm, float16, compiled, fullgraph'."""
        axes = self.cells[cell_id]
        parts = []
        for axis in (a for a in self.label_axes if a not in skip):
            value = axes.get(axis)
            if axis == "fullgraph":
                value = "" if value is None else ("fullgraph" if value else "breaks-allowed")
            elif axis == "mode" and value not in ("uncompiled", None):
                value = "compiled" if value == "default" else f"compiled {value}"
            elif axis == "layout":
                value = LAYOUT_NAMES.get(value, value)
            if value not in ("", None):
                parts.append(str(value))
        return ", ".join(parts)


def entry_of(record: dict[str, Any]) -> Entry:
    """A results.json cell record as a table entry."""
    error = record.get("error") or {}
    status = record.get("status", "?")
    if status == "skipped" or record.get("verdict") == NOT_APPLICABLE:
        return Entry(NOT_APPLICABLE, error.get("message") or "not run", error.get("type") or "NotApplicable")
    if status == "pass":
        return Entry("pass")
    message = error.get("message") or error.get("cause") or ""
    message = message.strip().splitlines()[0] if message.strip() else "(no message)"
    return Entry(status, message, error.get("type") or "", error.get("where") or "")


def load(out: str) -> list[History]:
    """Every environment's history in a sweep folder, one per (torch, device), oldest torch first."""
    sweep = read_sweep(out).get("pairs", {})
    runs: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for path in sorted(glob.glob(os.path.join(out, "torch-*", "transformers-*", "results.json"))):
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        if not doc.get("complete"):
            continue  # a pair still running, or interrupted: its column would be half empty
        torch = os.path.basename(os.path.dirname(os.path.dirname(path)))[len("torch-"):]
        release = os.path.basename(os.path.dirname(path))[len("transformers-"):]
        for record in doc.get("cells", []):
            runs.setdefault((torch, record.get("device", "?")), {}).setdefault(release, {})[record["id"]] = record
    histories = []
    for (torch, device), by_release in sorted(runs.items(), key=lambda kv: (release_key(kv[0][0].split("+")[0]),
                                                                            kv[0][1])):
        pairs = {r: sweep.get(f"{torch}/{r}", {}) for r in by_release}
        failed = [p["transformers"] for p in sweep.values() if p.get("torch") == torch and p.get("state") not in
                  ("complete", "interrupted", None) and p["transformers"] not in by_release]
        histories.append(build(torch, device, by_release, {**pairs, **{r: sweep[f"{torch}/{r}"] for r in failed}}))
    return histories


def build(torch: str, device: str, by_release: dict[str, dict[str, dict[str, Any]]],
          pairs: dict[str, dict[str, Any]]) -> History:
    """The table of one environment from each release's cell records (and the sweep's entry per release)."""
    releases = sorted(set(by_release) | set(pairs), key=release_key)
    cells: dict[str, dict[str, Any]] = {}
    for records in by_release.values():
        for cell_id, record in records.items():
            cells.setdefault(cell_id, {axis: record.get(axis) for axis in LABEL_AXES})
    entries: dict[str, dict[str, Entry]] = {cell_id: {} for cell_id in cells}
    for cell_id, axes in cells.items():
        for release in releases:
            record = by_release.get(release, {}).get(cell_id)
            entries[cell_id][release] = entry_of(record) if record else _absent(release, axes, pairs.get(release, {}))
    order = sorted(cells, key=lambda c: tuple(str(cells[c].get(a)) for a in LABEL_AXES))
    varying = tuple(a for a in LABEL_AXES if len({str(cells[c].get(a)) for c in cells}) > 1 or a in ("backend",))
    history = History(torch, device, releases, {c: cells[c] for c in order}, {c: entries[c] for c in order},
                      label_axes=varying)
    history.changes = changes(history)
    return history


def _absent(release: str, axes: dict[str, Any], pair: dict[str, Any]) -> Entry:
    registered = pair.get("registered")
    if registered is not None and axes.get("backend") not in registered:
        return Entry(NOT_APPLICABLE, f"transformers {release} registers no {axes.get('backend')} experts "
                                     f"implementation", "NotInRelease")
    if pair.get("state") not in (None, "complete"):
        return Entry(NOT_APPLICABLE, f"not run: {pair.get('state')}: {pair.get('error', '')}".strip(), "NotRun")
    return Entry(NOT_APPLICABLE, f"not in transformers {release}'s matrix", "NotInRelease")


def changes(history: History) -> list[Change]:
    """Every change point: (release, cell) where the state differs from the previous release's, in release order."""
    found = []
    for cell_id, by_release in history.entries.items():
        for previous, release in zip(history.releases, history.releases[1:]):
            before, after = by_release[previous], by_release[release]
            if before.state != after.state:
                found.append(Change(release, previous, cell_id, before, after))
    found.sort(key=lambda c: (release_key(c.release), list(history.cells).index(c.cell)))
    return found


def root_cause(change: Change) -> str:
    """The root cause worth naming at a change: the failure that went away, or the one that appeared."""
    before, after = change.before, change.after
    if after.status == NOT_APPLICABLE:
        return after.cause
    if after.status == "pass":
        return before.cause
    if before.status == "pass" or before.status == NOT_APPLICABLE:
        return after.cause
    return f"{before.cause} -> {after.cause}" if before.cause != after.cause else after.cause


def grouped_changes(history: History) -> list[tuple[str, str, str, str, list[str]]]:
    """Changes with the same release, transition and root cause folded into one line:
    (release, before status, after status, root cause, [row labels])."""
    groups: dict[tuple[str, str, str, str], list[str]] = {}
    for change in history.changes:
        group = (change.release, change.before.status, change.after.status, root_cause(change))
        groups.setdefault(group, []).append(history.label(change.cell))
    return [(*group, labels) for group, labels in groups.items()]


def first_change(history: History, cell_id: str) -> str | None:
    """The first release where this cell's state changed, or None."""
    return next((c.release for c in history.changes if c.cell == cell_id), None)
