"""The support table, derived from measurement: one row per backend and grouped_mm path, with numbered notes.

A row lists the compile modes and dtypes in which at least one of its compiled cells passes (breaks allowed),
and whether fullgraph=True works where the breaks-allowed twin works. Every failure, flaky cell, degraded pass,
difference between environments and gap in the evidence becomes a numbered note on the column it concerns,
so a listed value never hides an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.matrix import DTYPES, MODES
from harness.report_inputs import Env, Observation, env_sort_key
from harness.report_merge import Merged, is_flaky

COMPILED_MODES = tuple(mode for mode in MODES if mode != "uncompiled")
COLUMNS = ("implementation", "modes", "dtypes", "fullgraph")
# The documentation's row order; backends added later follow, by name.
_BACKEND_ORDER = ("grouped_mm", "batched_mm", "eager")
_SOURCE_ORDER = ("transformers", "reference", "user")
_PATH_ORDER = (None, "fallback", "unknown")
_PATH_SUFFIX = {None: "", "fallback": " (fallback)", "unknown": " (path not observed)"}
_MESSAGE_CHARS = 200


@dataclass(frozen=True)
class Summary:
    """What works in one row: compile modes and dtypes with a passing cell, and the fullgraph=True answer."""

    modes: tuple[str, ...]
    dtypes: tuple[str, ...]
    fullgraph: str  # Yes | No | Partly | not measured
    tried_modes: tuple[str, ...] = ()  # measured at all (working or not)
    tried_dtypes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"modes": list(self.modes), "dtypes": list(self.dtypes), "fullgraph": self.fullgraph,
                "tried_modes": list(self.tried_modes), "tried_dtypes": list(self.tried_dtypes)}


@dataclass
class Row:
    """One table row: its label, the combined summary, the summary per environment, and note numbers per column."""

    source: str
    backend: str
    path: str | None
    label: str
    summary: Summary
    per_env: dict[str, Summary]
    partial: bool
    notes: dict[str, list[int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"label": self.label, "source": self.source, "backend": self.backend, "path": self.path,
                **self.summary.to_json(), "partial": self.partial,
                "per_env": {key: s.to_json() for key, s in self.per_env.items()}, "notes": self.notes}


@dataclass
class Table:
    """The support table: rows, numbered notes (note n is notes[n-1]), environments and the cells behind it."""

    rows: list[Row]
    notes: list[str]
    envs: list[Env]
    cells: int
    flaky: int

    def to_json(self) -> dict[str, Any]:
        """JSON form (the `--format json` output's table part)."""
        return {"rows": [row.to_json() for row in self.rows],
                "notes": [{"number": i + 1, "text": text} for i, text in enumerate(self.notes)],
                "environments": [{"key": env.key, **env.to_json()} for env in self.envs],
                "cells": self.cells, "flaky": self.flaky}


def build_table(merged: Merged, source: str | None = None) -> Table:
    """Derive the support table from merged observations (optionally of one source only)."""
    observations = [obs for obs in merged.observations() if source is None or obs.cell["source"] == source]
    sources = {obs.cell["source"] for obs in observations}
    paths, inferred = _assign_paths(observations)
    grouped: dict[tuple, list[Observation]] = {}
    for obs in observations:
        grouped.setdefault((obs.cell["source"], obs.cell["backend"], paths[id(obs)]), []).append(obs)
    twins = _twins(observations)
    envs = sorted({obs.env.key: obs.env for obs in observations}.values(), key=env_sort_key)
    notes = _Notes()
    rows = []
    for key in sorted(grouped, key=_row_order):
        src, backend, path = key
        label = backend + _PATH_SUFFIX[path] + (f" [{src}]" if len(sources) > 1 else "")
        rows.append(_row(src, backend, path, label, grouped[key], twins, inferred, notes, envs))
    return Table(rows, notes.texts, envs, len(observations),
                 sum(1 for obs in observations if is_flaky(obs.cell)))


def works(cell: dict[str, Any]) -> bool:
    """A cell counts as working when it passed and no repeat of it disagreed."""
    return cell["status"] == "pass" and not is_flaky(cell)


def mode_label(mode: str) -> str:
    """How the docs write a mode: `None` for torch.compile's default."""
    return "None" if mode == "default" else mode


def modes_text(modes: tuple[str, ...]) -> str:
    """`all` when every compiled mode works, else the list in the matrix's order."""
    if modes == COMPILED_MODES:
        return "all"
    return ", ".join(mode_label(m) for m in modes) or "none"


def dtypes_text(dtypes: tuple[str, ...]) -> str:
    """The dtypes, comma-separated, or `none`."""
    return ", ".join(dtypes) or "none"


class _Notes:
    """Numbered notes; the same text gets the same number."""

    def __init__(self):
        self.texts: list[str] = []

    def add(self, text: str) -> int:
        """The number of this note (a new one when the text is new)."""
        if text not in self.texts:
            self.texts.append(text)
        return self.texts.index(text) + 1


def _row_order(key: tuple) -> tuple:
    source, backend, path = key
    rank = _BACKEND_ORDER.index(backend) if backend in _BACKEND_ORDER else len(_BACKEND_ORDER)
    source_rank = _SOURCE_ORDER.index(source) if source in _SOURCE_ORDER else len(_SOURCE_ORDER)
    return (source_rank, source, rank, backend, _PATH_ORDER.index(path))


def _assign_paths(observations: list[Observation]) -> tuple[dict[int, str | None], dict[int, bool]]:
    """Row path per observation: the observed grouped_mm path; a failing cell (never profiled) gets the one
    path its passing siblings of the same environment, dtype and compiled-ness all took, else `unknown`; a passing
    cell of a backend that reports paths elsewhere, whose profile showed neither path, is `unknown` too."""
    observed: dict[tuple, set[str]] = {}
    backends_with_paths = set()
    for obs in observations:
        path = (obs.cell.get("signals") or {}).get("grouped_mm_path")
        if path:
            backends_with_paths.add((obs.cell["source"], obs.cell["backend"]))
            observed.setdefault(_sibling_key(obs), set()).add(path)
    paths, inferred = {}, {}
    for obs in observations:
        path = (obs.cell.get("signals") or {}).get("grouped_mm_path")
        if not path and (obs.cell["source"], obs.cell["backend"]) in backends_with_paths:
            if obs.cell["status"] == "pass":
                path = "unknown"  # it ran, but the profile showed neither path: not counted as native
            else:
                candidates = observed.get(_sibling_key(obs), set())
                path = next(iter(candidates)) if len(candidates) == 1 else "unknown"
                inferred[id(obs)] = path != "unknown"
        paths[id(obs)] = None if path in (None, "native") else path
    return paths, inferred


def _sibling_key(obs: Observation) -> tuple:
    c = obs.cell
    return (obs.env.key, c["source"], c["backend"], c["dtype"], c["mode"] == "uncompiled", c.get("layout"),
            c.get("scope"), c.get("phase"))


def _twins(observations: list[Observation]) -> dict[tuple, dict[str, Any]]:
    """Breaks-allowed cells by everything but fullgraph, to ask whether fullgraph=True works where they do."""
    return {_twin_key(obs): obs.cell for obs in observations if obs.cell["fullgraph"] is False}


def _twin_key(obs: Observation) -> tuple:
    c = obs.cell
    return (obs.env.key, c["source"], c["backend"], c["mode"], c["dtype"], c["shape"], c.get("layout"),
            c.get("scope"), c.get("phase"))


def _summary(group: list[Observation], twins: dict[tuple, dict[str, Any]]) -> Summary | None:
    compiled = [obs for obs in group if obs.cell["mode"] != "uncompiled"]
    if not compiled:
        return None
    base = [obs.cell for obs in compiled if obs.cell["fullgraph"] is False] or [obs.cell for obs in compiled]
    modes = tuple(m for m in COMPILED_MODES if any(works(c) and c["mode"] == m for c in base))
    dtypes = tuple(d for d in DTYPES if any(works(c) and c["dtype"] == d for c in base))
    full = [obs for obs in compiled if obs.cell["fullgraph"] is True]
    # Judge fullgraph=True only where breaks-allowed works, so that a mode's own failure is not blamed on it.
    judged = [obs for obs in full if _twin_works(obs, twins)]
    if not full:
        fullgraph = "not measured"
    elif not judged:
        fullgraph = "No" if not any(works(obs.cell) for obs in full) else "Yes"
    elif all(works(obs.cell) for obs in judged):
        fullgraph = "Yes"
    elif not any(works(obs.cell) for obs in judged):
        fullgraph = "No"
    else:
        fullgraph = "Partly"
    tried_modes = tuple(m for m in COMPILED_MODES if any(c["mode"] == m for c in base))
    tried_dtypes = tuple(d for d in DTYPES if any(c["dtype"] == d for c in base))
    return Summary(modes, dtypes, fullgraph, tried_modes, tried_dtypes)


def _twin_works(obs: Observation, twins: dict[tuple, dict[str, Any]]) -> bool:
    twin = twins.get(_twin_key(obs))
    return twin is None or works(twin)  # no twin (fullgraph axis is [true] only): judge the cell itself


def _combine(per_env: dict[str, Summary]) -> Summary:
    summaries = list(per_env.values())
    modes = tuple(m for m in COMPILED_MODES if all(m in s.modes for s in summaries))
    dtypes = tuple(d for d in DTYPES if all(d in s.dtypes for s in summaries))
    answers = {s.fullgraph for s in summaries} - {"not measured"}
    fullgraph = answers.pop() if len(answers) == 1 else ("Partly" if answers else "not measured")
    tried_modes = tuple(m for m in COMPILED_MODES if any(m in s.tried_modes for s in summaries))
    tried_dtypes = tuple(d for d in DTYPES if any(d in s.tried_dtypes for s in summaries))
    return Summary(modes, dtypes, fullgraph, tried_modes, tried_dtypes)


def _row(source, backend, path, label, group, twins, inferred, notes: _Notes, all_envs: list[Env]) -> Row:
    by_env: dict[str, list[Observation]] = {}
    for obs in group:
        by_env.setdefault(obs.env.key, []).append(obs)
    envs = {obs.env.key: obs.env for obs in group}
    per_env = {}
    for key in sorted(by_env, key=lambda k: env_sort_key(envs[k])):
        summary = _summary(by_env[key], twins)
        if summary is not None:
            per_env[key] = summary
    summary = _combine(per_env) if per_env else Summary((), (), "not measured")
    partial = not any(env.device == "cuda" for env in envs.values())
    row = Row(source, backend, path, label, summary, per_env, partial)
    found: list[tuple[str, str]] = []  # (column, text), numbered below in column order
    if partial:
        devices = ", ".join(sorted({env.device for env in envs.values()}))
        # One shared note for every such row: the same words under each row would only repeat.
        found.append(("implementation", f"Partial evidence: measured on {devices} only, no cuda results; the GPU "
                                        f"behaviour is not claimed here."))
    if len(envs) < len(all_envs):
        seen = "; ".join(env.short for env in all_envs if env.key in envs)
        found.append(("implementation", f"{label}: seen only in {seen}."))
    if len({(s.modes, s.dtypes, s.fullgraph) for s in per_env.values()}) > 1:
        parts = [f"{envs[key].short}: modes {modes_text(s.modes)}; dtypes {dtypes_text(s.dtypes)}; "
                 f"fullgraph=True {s.fullgraph}" for key, s in per_env.items()]
        found.append(("implementation", f"{label}: differs by environment (the row shows what works in all of "
                                        f"them). " + " | ".join(parts)))
    if path == "unknown":
        found.append(("implementation", f"{label}: the profiled call of these cells showed neither a native grouped_mm "
                                        f"kernel nor the fallback op, so which path ran is not known."))
    guessed = [obs for obs in group if inferred.get(id(obs))]
    if guessed:
        found.append(("implementation", f"{label}: {len(guessed)} failing cell(s) never reached the profiled call; "
                                        f"their grouped_mm path is the one every passing cell of the same dtype and "
                                        f"environment took."))
    found += _failure_notes(label, group)
    found += [("modes", text) for text in _degraded_notes(label, group)]
    marks: dict[str, list[int]] = {column: [] for column in COLUMNS}
    for column, text in sorted(found, key=lambda item: COLUMNS.index(item[0])):
        marks[column].append(notes.add(text))
    row.notes = {column: numbers for column, numbers in marks.items() if numbers}
    return row


def _failure_notes(label: str, group: list[Observation]) -> list[tuple[str, str]]:
    """(column, text) per kind of failure: the status, the error type, where it happens, one message."""
    buckets: dict[tuple, list[Observation]] = {}
    for obs in group:
        if is_flaky(obs.cell):
            buckets.setdefault(("flaky", "", ""), []).append(obs)
        elif obs.cell["status"] != "pass":
            error = obs.cell.get("error") or {}
            where = "fullgraph" if obs.cell["fullgraph"] is True else "other"
            buckets.setdefault((where, obs.cell["status"], error.get("type") or ""), []).append(obs)
    out = []
    for (where, status, error_type), failed in sorted(buckets.items()):
        failed.sort(key=lambda obs: (env_sort_key(obs.env), obs.id))
        scope = _scope(failed, group)
        if where == "flaky":
            statuses = sorted({o["status"] for obs in failed for o in obs.cell["flaky"]})
            out.append(("implementation", f"{label}: flaky in {len(failed)} cell(s) ({scope}): repeated runs "
                                          f"disagreed ({', '.join(statuses)}), e.g. `{failed[0].id}`."))
            continue
        error = failed[0].cell.get("error") or {}
        setting = "fullgraph=True" if where == "fullgraph" else _setting(failed)
        out.append(("fullgraph" if where == "fullgraph" else "modes",
                    f"{label}, {setting}: `{status}` in {len(failed)} cell(s) ({scope}): "
                    f"{_clean(error_type)}: {_clean(error.get('message') or '')} (e.g. `{failed[0].id}`)"))
    return out


def _degraded_notes(label: str, group: list[Observation]) -> list[str]:
    kinds: dict[str, list[Observation]] = {}
    for obs in group:
        if obs.cell["status"] == "pass":
            for degradation in (obs.cell.get("signals") or {}).get("degraded") or []:
                kinds.setdefault(degradation.split(":", 1)[0], []).append(obs)
    return [f"{label}: passes, but degraded ({kind}) in {len(cells)} cell(s) ({_scope(cells, group)})."
            for kind, cells in sorted(kinds.items())]


def _setting(failed: list[Observation]) -> str:
    values = {obs.cell["fullgraph"] for obs in failed}
    if values == {None}:
        return "uncompiled"
    return "fullgraph=False" if values <= {False, None} else "any fullgraph"


def _scope(subset: list[Observation], group: list[Observation]) -> str:
    """Which modes, dtypes, shapes and environments the subset covers; `every` when it covers all of the row's
    cells of the same fullgraph setting."""
    settings = {obs.cell["fullgraph"] for obs in subset}
    group = [obs for obs in group if obs.cell["fullgraph"] in settings]
    parts = []
    order = [mode_label(m) for m in MODES] + list(DTYPES)
    for name, value in (("mode", lambda o: mode_label(o.cell["mode"])), ("dtype", lambda o: o.cell["dtype"]),
                        ("shape", lambda o: o.cell["shape"]), ("layout", lambda o: o.cell.get("layout", "default")),
                        ("env", lambda o: o.env.short)):
        have = sorted({value(o) for o in subset}, key=lambda v: (order.index(v) if v in order else len(order), v))
        every = {value(o) for o in group}
        if len(every) == 1:  # one value in the whole row: nothing to tell
            continue
        parts.append(f"every {name}" if set(have) == every else f"{name} {', '.join(have)}")
    return "; ".join(parts)


def _clean(text: str) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|").replace("`", "'")
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"
