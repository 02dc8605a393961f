"""Baselines per environment (reports/baselines/<env key>.json) and the diff of two observations of the matrix."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError
from harness.results.observations import Env, Observation, env_sort_key, observations_of
from harness.results.merge import flaky_outcomes, is_flaky, merge
from harness.results.results_json import atomic_write_json, read_results

BASELINE_DIR = os.path.join("reports", "baselines")
# Kinds of change, in report order. Gating ones fail `run --baseline` (exit 1); the others are reported.
KINDS = ("new_failure", "failure_changed", "fixed", "flaky", "path_changed", "drift", "compile_time", "added",
         "removed")
GATING = frozenset({"new_failure", "failure_changed", "fixed", "flaky"})
DRIFT_RATIO = 2.0  # max relative error grew or shrank by more than this factor
COMPILE_RATIO = 3.0  # compile time grew by more than this factor ...
COMPILE_FLOOR_S = 1.0  # ... and by more than this many seconds (sub-second compiles are noise)
# Below one unit of roundoff of the dtype, error changes are rounding noise, not drift.
_EPS = {"bfloat16": 2.0**-8, "float16": 2.0**-11, "float32": 2.0**-23}


@dataclass(frozen=True)
class Change:
    """One difference between a before and an after observation of a cell."""

    kind: str
    id: str
    before: str
    after: str
    detail: str
    gating: bool

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return dict(self.__dict__)


def diff_cells(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]], *,
               missing: bool = True, gating: frozenset[str] = GATING) -> list[Change]:
    """Changes from `before` to `after` (cells by id); `missing=False` ignores cells only one side has."""
    changes = []
    for cell_id in sorted(set(before) | set(after)):
        old, new = before.get(cell_id), after.get(cell_id)
        if old is None or new is None:
            if missing:
                kind = "added" if old is None else "removed"
                changes.append(_change(kind, cell_id, "-" if old is None else _outcome(old),
                                       "-" if new is None else _outcome(new), "", gating))
            continue
        changes += _cell_changes(cell_id, old, new, gating)
    return sorted(changes, key=lambda c: (KINDS.index(c.kind), c.id))


def cross_env_changes(merged) -> list[tuple[Env, Env, list[Change]]]:
    """Diffs between environments of the same device kind, each against the next (older torch first)."""
    by_device: dict[str, list[Env]] = {}
    for env in sorted(merged.envs.values(), key=env_sort_key):
        by_device.setdefault(env.device, []).append(env)
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for (key, cell_id), cell in merged.cells.items():
        cells.setdefault(key, {})[cell_id] = cell
    out = []
    for envs in by_device.values():
        for before, after in zip(envs, envs[1:]):
            out.append((before, after, diff_cells(cells[before.key], cells[after.key])))
    return out


def baseline_path(env: Env, directory: str = BASELINE_DIR) -> str:
    """Where the baseline of an environment lives."""
    return os.path.join(directory, env.key + ".json")


def load_cells(path: str) -> tuple[dict[str, Env], dict[str, dict[str, dict[str, Any]]]]:
    """A results, merged or baseline file as (environments by key, cells by id per environment key)."""
    merged = merge(observations_of(read_results(path), path))
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for (key, cell_id), cell in merged.cells.items():
        cells.setdefault(key, {})[cell_id] = cell
    return merged.envs, cells


def baseline_document(env: Env, cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A baseline file: a merged document of one environment (readable wherever results are)."""
    merged = merge([Observation(env, cell, "baseline") for _, cell in sorted(cells.items())])
    doc = merged.document([])
    doc["kind"] = "baseline"
    doc["complete"] = True
    return doc


def write_baseline(path: str, env: Env, cells: dict[str, dict[str, Any]]) -> None:
    """Write (atomically) the baseline of one environment."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_json(path, baseline_document(env, cells))


def against_baselines(results_path: str, baseline: str, directory: str = BASELINE_DIR):
    """Per environment of a results file: (env key, baseline path or None, changes), cells both sides have only."""
    envs, after = load_cells(results_path)
    out = []
    for key in sorted(after, key=lambda k: env_sort_key(envs[k])):
        path, before = pick_baseline(baseline, envs[key], directory)
        out.append((key, path, diff_cells(before, after[key], missing=False) if path else []))
    return out


def check_run(results_path: str, baseline: str, directory: str = BASELINE_DIR) -> tuple[list[str], bool]:
    """Compare a finished run with its baseline (`auto`: the one of its environment); (lines, any gating change)."""
    lines, gate = [], False
    for key, path, changes in against_baselines(results_path, baseline, directory):
        if path is None:
            lines.append(f"baseline: none for {key} in {directory} "
                         f"(record one: python -m harness update-baseline {results_path})")
            continue
        gate = gate or any(c.gating for c in changes)
        lines.append(f"baseline {path} ({key}): " + (summary(changes) or "no change"))
        lines += ["  " + line for line in change_lines(changes)]
        if any(c.kind == "fixed" for c in changes):
            lines.append(f"  fixes fail the gate until accepted: python -m harness update-baseline {results_path}")
    return lines, gate


def summary(changes: list[Change]) -> str:
    """`2 new_failure, 1 fixed` style counts, in report order."""
    counts = {kind: sum(1 for c in changes if c.kind == kind) for kind in KINDS}
    return ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)


def change_lines(changes: list[Change]) -> list[str]:
    """One plain-text line per change (gating ones marked with `!`)."""
    return [f"{'!' if c.gating else ' '} {c.kind:<15} {c.id}: {c.before} -> {c.after}"
            + (f" ({c.detail})" if c.detail else "") for c in changes]


def pick_baseline(baseline: str, env: Env, directory: str):
    if baseline == "auto":
        path = baseline_path(env, directory)
        if not os.path.exists(path):
            return None, {}
    else:
        path = baseline
    envs, cells = load_cells(path)
    if env.key in cells:
        return path, cells[env.key]
    # An explicit baseline of another environment (say, the previous torch): compare the cells of this device.
    same_device = [key for key, e in envs.items() if e.device == env.device]
    if len(same_device) > 1:
        raise HarnessError(f"holds {len(same_device)} {env.device} environments and none is {env.key}; give the "
                           f"baseline of one environment", file=path, key="environments")
    return (path, cells[same_device[0]]) if same_device else (None, {})


def _cell_changes(cell_id: str, old: dict[str, Any], new: dict[str, Any], gating: frozenset[str]) -> list[Change]:
    out = []
    if is_flaky(new) and not is_flaky(old):
        statuses = ", ".join(sorted({o["status"] for o in flaky_outcomes(new)}))
        out.append(_change("flaky", cell_id, _outcome(old), "flaky", f"repeats disagree: {statuses}", gating))
    old_status, new_status = old["status"], new["status"]
    if old_status == "pass" and new_status != "pass":
        out.append(_change("new_failure", cell_id, "pass", _outcome(new), _message(new), gating))
    elif old_status != "pass" and new_status == "pass":
        out.append(_change("fixed", cell_id, _outcome(old), "pass", "", gating))
    elif old_status != "pass" and _outcome(old) != _outcome(new):
        out.append(_change("failure_changed", cell_id, _outcome(old), _outcome(new), _message(new), gating))
    if old_status == new_status == "pass":
        old_path = (old.get("signals") or {}).get("grouped_mm_path")
        new_path = (new.get("signals") or {}).get("grouped_mm_path")
        if old_path != new_path:  # another kernel ran (or the profile no longer shows which)
            out.append(_change("path_changed", cell_id, old_path or "not seen", new_path or "not seen",
                               "grouped_mm path", gating))
        out += _numbers(cell_id, old, new, gating)
    return out


def _numbers(cell_id, old, new, gating) -> list[Change]:
    out = []
    old_s, new_s = old.get("signals") or {}, new.get("signals") or {}
    a, b = old_s.get("max_rel_error"), new_s.get("max_rel_error")
    eps = _EPS.get(new.get("dtype"), 0.0)
    if a is not None and b is not None and max(a, b) > eps:
        ratio = (max(a, b) / min(a, b)) if min(a, b) > 0 else float("inf")
        if ratio > DRIFT_RATIO:
            direction = "grew" if b > a else "shrank"
            out.append(_change("drift", cell_id, f"{a:.3g}", f"{b:.3g}",
                               f"max relative error {direction} x{ratio:.3g}", gating))
    a, b = old_s.get("compile_s"), new_s.get("compile_s")
    if a is not None and b is not None and b > a * COMPILE_RATIO and b - a > COMPILE_FLOOR_S:
        out.append(_change("compile_time", cell_id, f"{a:.2f}s", f"{b:.2f}s",
                           f"compile time x{b / max(a, 1e-9):.3g}", gating))
    return out


def _change(kind, cell_id, before, after, detail, gating) -> Change:
    return Change(kind, cell_id, before, after, detail, kind in gating)


def _outcome(cell: dict[str, Any]) -> str:
    error = cell.get("error") or {}
    if cell["status"] == "pass" or not error.get("type"):
        return cell["status"]
    return f"{cell['status']} ({error['type'].rsplit('.', 1)[-1]})"


def _message(cell: dict[str, Any]) -> str:
    message = " ".join(str((cell.get("error") or {}).get("message") or "").split())
    return message[:160] + ("…" if len(message) > 160 else "")
