"""Join observations from shards and machines into one document; disagreeing repeats of a cell are flaky."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from harness.results.observations import Env, Observation, env_sort_key
from harness.results.results_json import SCHEMA_VERSION, summarize


@dataclass
class Merged:
    """Merged cells keyed by (environment key, cell id), the environments, and the flaky cells."""

    envs: dict[str, Env] = field(default_factory=dict)
    cells: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    flaky: list[dict[str, Any]] = field(default_factory=list)

    def observations(self) -> list[Observation]:
        """The merged cells as observations (one per environment and cell), in document order."""
        return [Observation(self.envs[key], cell, "merged") for (key, _), cell in self._ordered()]

    def document(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """The merged results document (readable by read_results and by every report command)."""
        cells = [cell for _, cell in self._ordered()]
        ordered_envs = sorted(self.envs.values(), key=env_sort_key)
        return {
            "schema": SCHEMA_VERSION,
            "kind": "merged",
            "complete": all(item.get("complete") for item in inputs),
            "interrupted": any(item.get("interrupted") for item in inputs),
            "inputs": inputs,
            "environment": {"kind": "merged", "keys": [env.key for env in ordered_envs]},
            "environments": {env.key: env.to_json() for env in ordered_envs},
            "summary": summarize(cells),
            "flaky": self.flaky,
            "cells": cells,
        }

    def _ordered(self):
        rank = {env.key: i for i, env in enumerate(sorted(self.envs.values(), key=env_sort_key))}
        return sorted(self.cells.items(), key=lambda item: (rank[item[0][0]], item[0][1]))


def merge(observations: list[Observation]) -> Merged:
    """Merge observations: repeats that agree count once, repeats that disagree are kept side by side as flaky."""
    merged = Merged()
    seen: dict[tuple[str, str], list[Observation]] = {}
    for obs in observations:
        merged.envs.setdefault(obs.env.key, obs.env)
        seen.setdefault((obs.env.key, obs.id), []).append(obs)
    for key, group in seen.items():
        cell = copy.deepcopy(group[0].cell)
        cell["env"] = key[0]
        cell.pop("flaky", None)
        outcomes = [outcome for obs in group for outcome in _outcomes(obs)]
        if len(outcomes) > 1:
            cell["observations"] = len(outcomes)
        if len({(o["status"], o["error_type"]) for o in outcomes}) > 1:
            cell["flaky"] = outcomes
            merged.flaky.append({"env": key[0], "id": key[1], "observations": outcomes})
        merged.cells[key] = cell
    merged.flaky.sort(key=lambda item: (item["env"], item["id"]))
    return merged


def is_flaky(cell: dict[str, Any]) -> bool:
    """True for a cell whose repeated observations disagree (across files, or within one `run --repeat`)."""
    return bool(cell.get("flaky")) or cell.get("verdict") == "flaky"


def _outcomes(obs: Observation) -> list[dict[str, Any]]:
    if obs.cell.get("flaky"):  # a merged input: keep every repeat it recorded
        return list(obs.cell["flaky"])
    error = obs.cell.get("error") or {}
    repeats = (obs.cell.get("signals") or {}).get("repeat_statuses") or []
    if len(set(repeats)) > 1:  # `run --repeat` saw different statuses in one file
        return [{"status": status, "error_type": None, "message": f"repeat {i + 1} of {len(repeats)}",
                 "origin": obs.origin} for i, status in enumerate(repeats)]
    return [{"status": obs.cell["status"], "error_type": error.get("type"), "message": error.get("message"),
             "origin": obs.origin}]
