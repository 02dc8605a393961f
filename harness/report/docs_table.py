"""The documentation's torch.compile table for one source, from measurement, in the docs' own words.

Rows are the page's: `grouped_mm`, `grouped_mm (fallback)`, `batched_mm`, `eager` (then any other backend the
source registers, only when it was measured with its prerequisites present). Only cells inside the table's
claim are read: kernel inference on the default layout. A column whose answer differs between platforms (CPU,
a GPU architecture, a torch release) says so inside the cell, e.g. `None, max-autotune-no-cudagraphs (CUDA
sm 9.0); all (CPU)`. A few one-sentence notes say what was measured and what was not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.environment.registered import DOCUMENTED
from harness.results.observations import Env, Observation, env_sort_key
from harness.results.merge import Merged
from harness.config.matrix import DTYPES
from harness.report.row_summary import (COMPILED_MODES, Summary, assign_paths, dtypes_text, fullgraph_twins, modes_text,
                                  summarize)

# The claim of the docs' table: the experts kernel, at inference, on the standard (gate_up) layout.
CLAIM_SCOPE = {"scope": "kernel", "phase": "inference", "layout": "default"}
HEADER = ("Implementation", "compilation modes", "dtypes", "fullgraph=True")


@dataclass
class DocsRow:
    """One row: the docs' label and each column's text; `platforms` keeps the measured summary per platform."""

    label: str
    backend: str
    path: str | None
    modes: str
    dtypes: str
    fullgraph: str
    platforms: dict[str, Summary] = field(default_factory=dict)

    def cells(self) -> tuple[str, str, str, str]:
        """The four cells of the Markdown row."""
        return (self.label, self.modes, self.dtypes, self.fullgraph)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"label": self.label, "backend": self.backend, "path": self.path, "modes": self.modes,
                "dtypes": self.dtypes, "fullgraph": self.fullgraph,
                "platforms": {name: s.to_json() for name, s in self.platforms.items()}}


@dataclass
class DocsTable:
    """The table for one source, its notes, and the environments behind it."""

    source: str
    rows: list[DocsRow]
    notes: list[str]
    envs: list[Env]
    cells: int

    def to_json(self) -> dict[str, Any]:
        """JSON form (the `table` of `report --format json`)."""
        return {"source": self.source, "rows": [row.to_json() for row in self.rows], "notes": self.notes,
                "environments": [{"key": env.key, **env.to_json()} for env in self.envs], "cells": self.cells}


def in_claim_scope(cell: dict[str, Any]) -> bool:
    """True for the cells the docs' table speaks about."""
    return all(cell.get(axis, value) == value for axis, value in CLAIM_SCOPE.items())


def platform(env: Env) -> str:
    """Where a result holds, in the docs' words: `CPU` or `CUDA sm 9.0`."""
    if env.device == "cuda":
        return f"CUDA sm {env.compute_capability or '?'}"
    return env.device.upper()


def default_source(merged: Merged) -> str:
    """transformers when any of its cells was measured (the system the docs describe), else the first source."""
    sources = [obs.cell["source"] for obs in merged.observations()]
    return "transformers" if "transformers" in sources or not sources else sources[0]


def build_docs_table(merged: Merged, source: str = "transformers") -> DocsTable:
    """The docs' table for `source` from every observation of it inside the claim's scope."""
    observations = [obs for obs in merged.observations()
                    if obs.cell["source"] == source and in_claim_scope(obs.cell)]
    paths, inferred = assign_paths(observations)
    twins = fullgraph_twins(observations)
    groups: dict[tuple[str, str | None], list[Observation]] = {}
    for obs in observations:
        groups.setdefault((obs.cell["backend"], paths[id(obs)]), []).append(obs)
    rows = [_row(backend, path, groups[(backend, path)], twins) for backend, path in sorted(groups, key=_order)]
    envs = sorted({obs.env.key: obs.env for obs in observations}.values(), key=env_sort_key)
    unseen = sorted({obs.env.label for obs in observations if inferred.get(id(obs)) and obs.cell["status"] == "pass"})
    return DocsTable(source, [row for row in rows if row is not None], _notes(envs, groups, unseen), envs,
                     len(observations))


def _order(key: tuple[str, str | None]) -> tuple:
    backend, path = key
    rank = DOCUMENTED.index(backend) if backend in DOCUMENTED else len(DOCUMENTED)
    return (rank, backend, (None, "fallback", "unknown").index(path))


def _row(backend: str, path: str | None, group: list[Observation], twins) -> DocsRow | None:
    label = backend + {None: "", "fallback": " (fallback)", "unknown": " (path not observed)"}[path]
    by_platform: dict[str, list[Observation]] = {}
    for obs in sorted(group, key=lambda o: env_sort_key(o.env)):
        by_platform.setdefault(platform(obs.env), []).append(obs)
    summaries = {name: s for name, obs in by_platform.items() if (s := _platform_summary(obs, twins)) is not None}
    if not summaries:
        return None  # only uncompiled cells: nothing to say about torch.compile
    return DocsRow(label, backend, path, _column(summaries, _modes), _column(summaries, _dtypes),
                   _column(summaries, _fullgraph), summaries)


def _platform_summary(group: list[Observation], twins) -> Summary | None:
    """One platform's summary; torch releases that disagree there make the answer the intersection."""
    by_env: dict[str, list[Observation]] = {}
    for obs in group:
        by_env.setdefault(obs.env.key, []).append(obs)
    summaries = [s for obs in by_env.values() if (s := summarize(obs, twins)) is not None]
    if not summaries:
        return None
    modes = tuple(m for m in COMPILED_MODES if all(m in s.modes for s in summaries))
    dtypes = tuple(d for d in DTYPES if all(d in s.dtypes for s in summaries))
    answers = {s.fullgraph for s in summaries}
    fullgraph = answers.pop() if len(answers) == 1 else "Partly"
    tried_modes = tuple(m for m in COMPILED_MODES if any(m in s.tried_modes for s in summaries))
    tried_dtypes = tuple(d for d in DTYPES if any(d in s.tried_dtypes for s in summaries))
    return Summary(modes, dtypes, fullgraph, tried_modes, tried_dtypes)


def _modes(s: Summary) -> str:
    return modes_text(s.modes)


def _dtypes(s: Summary) -> str:
    return dtypes_text(s.dtypes)


def _fullgraph(s: Summary) -> str:
    return {"not measured": "not measured", "Partly": "partly"}.get(s.fullgraph, s.fullgraph)


def _column(summaries: dict[str, Summary], render) -> str:
    """One text when every platform agrees, else `text (platforms); text (platforms)`, CUDA first."""
    texts: dict[str, list[str]] = {}
    for name in sorted(summaries, key=lambda n: (not n.startswith("CUDA"), n)):
        texts.setdefault(render(summaries[name]), []).append(name)
    if len(texts) == 1:
        return next(iter(texts))
    return "; ".join(f"{text} ({', '.join(names)})" for text, names in texts.items())


def _notes(envs: list[Env], groups: dict, unseen: list[str]) -> list[str]:
    """What was measured where, and what was not: one sentence each."""
    if not envs:
        return ["Nothing was measured for this table."]
    by_platform: dict[str, list[Env]] = {}
    for env in envs:
        by_platform.setdefault(platform(env), []).append(env)
    parts = []
    for name, platform_envs in sorted(by_platform.items(), key=lambda item: (not item[0].startswith("CUDA"), item[0])):
        gpu = next((env.device_name for env in platform_envs if env.device_name), None)
        torches = " and ".join(sorted({env.torch.split("+")[0] for env in platform_envs}))
        where = f"{name} ({gpu})" if gpu else name
        parts.append(f"{where} with torch {torches}")
    transformers = ", ".join(sorted({env.transformers or "none" for env in envs}))
    notes = [f"Measured with transformers {transformers} on " + "; ".join(parts) + "."]
    cuda = [env for env in envs if env.device == "cuda"]
    if not cuda:
        notes.append("No GPU was measured: the table says nothing about CUDA graphs or GPU kernels.")
    else:
        archs = sorted({env.compute_capability or "?" for env in cuda})
        notes.append(f"GPU results hold for compute capability {', '.join(archs)}; other GPU architectures "
                     "were not measured.")
    if unseen:
        notes.append(f"The profiler did not show which grouped_mm path ran with {'; '.join(unseen)}: those cells "
                     "are counted on the path the same cell took with the other torch release.")
    if any(path == "unknown" for _, path in groups):
        notes.append("`(path not observed)`: neither the native grouped_mm kernel nor the fallback showed up "
                     "in the profiler, so these cells are not counted for either row.")
    return notes
