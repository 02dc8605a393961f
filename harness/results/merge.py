"""Join observations from shards and machines into one document; disagreeing repeats of a cell are flaky.

Flakiness is one thing, the verdict `flaky`, and judge() gives it: to a cell whose `run --repeat` statuses
varied (the record keeps them in `signals.repeat_statuses`) and, here, to a cell whose observations in several
files disagree (the merged cell keeps them in `flaky`, the evidence). `flaky_outcomes` reads either.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from harness.results.observations import Env, Observation, env_sort_key
from harness.results.record import CellRecord
from harness.results.results_json import SCHEMA_VERSION, summarize
from harness.results.verdict import judge


@dataclass
class Merged:
    """Merged cells keyed by (environment key, cell id) and the environments."""

    envs: dict[str, Env] = field(default_factory=dict)
    cells: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @property
    def flaky(self) -> list[dict[str, Any]]:
        """The cells whose verdict is flaky, as {env, id, observations}, in document order."""
        return [{"env": env, "id": cell_id, "observations": flaky_outcomes(cell)}
                for (env, cell_id), cell in self._ordered() if is_flaky(cell)]

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
        outcomes = [outcome for obs in group for outcome in flaky_outcomes(obs.cell, obs.origin)]
        if len(outcomes) > 1:
            cell["observations"] = len(outcomes)
            _judge_repeats(cell, outcomes)
        merged.cells[key] = cell
    return merged


def is_flaky(cell: dict[str, Any]) -> bool:
    """True for a cell whose repeated observations disagree: its verdict is flaky."""
    return cell.get("verdict") == "flaky"


def flaky_outcomes(cell: dict[str, Any], origin: str = "this run") -> list[dict[str, Any]]:
    """Each observation of the cell as {status, error_type, message, origin}: the ones a merge kept, the statuses
    of `run --repeat`, else the one outcome the cell records."""
    if cell.get("flaky"):  # merged already: every observation it kept
        return list(cell["flaky"])
    error = cell.get("error") or {}
    repeats = (cell.get("signals") or {}).get("repeat_statuses") or []
    if len(set(repeats)) > 1:  # `run --repeat` saw different statuses in one file
        return [{"status": status, "error_type": None, "message": f"repeat {i + 1} of {len(repeats)}",
                 "origin": origin} for i, status in enumerate(repeats)]
    return [{"status": cell["status"], "error_type": error.get("type"), "message": error.get("message"),
             "origin": origin}]


def _judge_repeats(cell: dict[str, Any], outcomes: list[dict[str, Any]]) -> None:
    """Observations that disagree (status or error type) make the cell flaky, by judge(); they stay as evidence."""
    labels = [o["status"] + (f" ({o['error_type']})" if o.get("error_type") else "") for o in outcomes]
    if len(set(labels)) > 1:
        record = CellRecord.from_json(cell)
        judgement = judge(record.expected, record.status, record.error, labels)
        cell["verdict"], cell["verdict_reason"] = judgement.verdict.value, judgement.reason
        cell["flaky"] = outcomes
