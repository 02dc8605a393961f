"""What works among measured cells: the summary behind each row of the docs' table (harness/report/docs_table.py).

A summary lists the compile modes and dtypes in which at least one compiled cell passes (breaks allowed), and
whether fullgraph=True works where the breaks-allowed twin works. grouped_mm cells are split by the path the
profiler saw (native kernel or fallback).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.config.matrix import DTYPES, MODES
from harness.results.observations import Observation
from harness.results.merge import is_flaky

COMPILED_MODES = tuple(mode for mode in MODES if mode != "uncompiled")


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


def works(cell: dict[str, Any]) -> bool:
    """A cell counts as working when it passed and no repeat of it disagreed."""
    return cell["status"] == "pass" and not is_flaky(cell)


def mode_label(mode: str) -> str:
    """How the docs write a mode: `None` for torch.compile's default."""
    return "None" if mode == "default" else mode


def modes_text(modes: tuple[str, ...]) -> str:
    """`all` when every compiled mode works, else the list in the matrix's order; never `none` (reads like None)."""
    if modes == COMPILED_MODES:
        return "all"
    return ", ".join(mode_label(m) for m in modes) or "no mode works"


def dtypes_text(dtypes: tuple[str, ...]) -> str:
    """The dtypes, comma-separated, or `no dtype works`."""
    return ", ".join(dtypes) or "no dtype works"


def assign_paths(observations: list[Observation]) -> tuple[dict[int, str | None], dict[int, bool]]:
    """Row path per observation: the observed grouped_mm path; a failing cell (never profiled) gets the one
    path its passing siblings of the same environment, dtype and compiled-ness all took, else `unknown`; a passing
    cell of a backend that reports paths elsewhere, whose profile showed neither path (torch 2.14.1 hides
    transformers' fallback op from the profiler), gets the one path the same cell took in the other environments
    of its device, else `unknown`. `inferred` marks the cells whose path was not seen but derived."""
    observed: dict[tuple, set[str]] = {}
    same_cell: dict[tuple, set[str]] = {}
    backends_with_paths = set()
    for obs in observations:
        path = (obs.cell.get("signals") or {}).get("grouped_mm_path")
        if path:
            backends_with_paths.add((obs.cell["source"], obs.cell["backend"]))
            observed.setdefault(_sibling_key(obs), set()).add(path)
            same_cell.setdefault((obs.id, obs.env.device), set()).add(path)
    paths, inferred = {}, {}
    for obs in observations:
        path = (obs.cell.get("signals") or {}).get("grouped_mm_path")
        if not path and (obs.cell["source"], obs.cell["backend"]) in backends_with_paths:
            if obs.cell["status"] == "pass":
                # It ran, but the profile showed neither path: never counted as native by default.
                candidates = same_cell.get((obs.id, obs.env.device), set())
                path = next(iter(candidates)) if len(candidates) == 1 else "unknown"
                inferred[id(obs)] = path != "unknown"
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


def fullgraph_twins(observations: list[Observation]) -> dict[tuple, dict[str, Any]]:
    """Breaks-allowed cells by everything but fullgraph, to ask whether fullgraph=True works where they do."""
    return {_twin_key(obs): obs.cell for obs in observations if obs.cell["fullgraph"] is False}


def _twin_key(obs: Observation) -> tuple:
    c = obs.cell
    return (obs.env.key, c["source"], c["backend"], c["mode"], c["dtype"], c["shape"], c.get("layout"),
            c.get("scope"), c.get("phase"))


def summarize(group: list[Observation], twins: dict[tuple, dict[str, Any]]) -> Summary | None:
    """What works among a group's compiled cells (modes, dtypes with a passing cell; the fullgraph answer)."""
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
