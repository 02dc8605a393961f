"""What the HTML report reads besides the merged cells: the cells not run, and the comparison with baselines."""

from __future__ import annotations

from typing import Any

from harness.results.baseline import BASELINE_DIR, against_baselines
from harness.report.html.gate import BaselineCheck
from harness.results.observations import Env
from harness.results.merge import Merged
from harness.results.results_json import read_results


def skipped_cells(paths: list[str]) -> list[tuple[Env, dict[str, Any]]]:
    """The skipped (not run here) cells of plain results files, with the environment they would have run in."""
    out = []
    for path in paths:
        doc = read_results(path)
        env = doc.get("environment") or {}
        if doc.get("environments") is not None or not isinstance(env.get("torch"), str):
            continue  # merged and baseline files keep measured cells only
        for cell in doc["cells"]:
            if cell["status"] == "skipped":
                device = cell["device"]
                out.append((Env(env["torch"], env.get("transformers"), device,
                                env.get("compute_capability") if device == "cuda" else None,
                                env.get("device_name") if device == "cuda" else None), cell))
    return out


def baseline_checks(paths: list[str], merged: Merged, baseline: str,
                    directory: str = BASELINE_DIR) -> list[BaselineCheck]:
    """Each environment's cells against its baseline (`auto`) or against one baseline FILE, over every input."""
    found: dict[str, tuple[str | None, dict]] = {}
    for path in paths:
        for key, base, changes in against_baselines(path, baseline, directory):
            old_base, old = found.get(key, (None, {}))
            merged_changes = dict(old)
            for change in changes:  # shards and repeats of one environment: one entry per change
                merged_changes.setdefault((change.kind, change.id), change)
            found[key] = (old_base or base, merged_changes)
    out = []
    for key, (base, changes) in found.items():
        env = merged.envs.get(key)
        label = env.short if env else key
        out.append(BaselineCheck(key, label, base, sorted(changes.values(), key=lambda c: (c.kind, c.id))))
    return out
