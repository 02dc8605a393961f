"""Release-aware cells: a transformers cell whose family or backend does not exist in the release under test.

A release sweep (`python -m harness history`) runs one slice of the matrix against many transformers releases.
NemotronH experts arrived in 5.3.0, `sonicmoe` in 5.7.0, `deepgemm` in 5.10.0: in an older release such a cell
cannot run, and that is neither a regression nor a crash. `not_in_release` turns the failed outcome of such a
cell into `skipped` with error type `NotInRelease` (verdict `not_applicable`), naming what the release lacks.
It looks only at the installed release (find_spec, attributes), never at the error text, and only after the
cell failed, so passing cells cost nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

ERROR_TYPE = "NotInRelease"


def not_in_release(spec: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any]:
    """`outcome`, or a `skipped` NotInRelease outcome when the release lacks the cell's family or backend."""
    cell = spec["cell"]
    if cell.get("source") != "transformers" or outcome.get("status") in ("pass", "skipped"):
        return outcome
    try:
        missing = missing_in_release(cell)
    except Exception:  # noqa: BLE001 - the check itself must never turn a result into a crash
        return outcome
    if missing is None:
        return outcome
    error = outcome.get("error") or {}
    return {**outcome, "status": "skipped",
            "error": {"type": ERROR_TYPE, "message": missing, "phase": "setup",
                      "original_type": error.get("type"), "original_message": error.get("message")}}


def missing_in_release(cell: dict[str, Any]) -> str | None:
    """What the installed transformers lacks for this cell (one sentence), or None when it has everything."""
    from harness.environment import registered
    from harness.environment import transformers_src
    from harness.sources.families import FAMILIES

    version = transformers_src.describe().get("version") or "(unknown version)"
    release = f"transformers {version}"
    backend = cell.get("backend")
    keys = registered.registered_keys()
    if backend != "eager" and keys is not None and backend not in keys:
        return f"{release} registers no {backend} experts implementation (registered: {', '.join(keys)})"
    fam = FAMILIES.get(cell.get("layout", "default"))
    if fam is None:
        return None
    name = fam.experts_class[:-len("Experts")] if fam.experts_class.endswith("Experts") else fam.experts_class
    module_name = f"transformers.models.{fam.model_type}.modeling_{fam.model_type}"
    if importlib.util.find_spec(f"transformers.models.{fam.model_type}") is None:
        return f"{release} has no {name} experts (no transformers.models.{fam.model_type})"
    module = importlib.import_module(module_name)
    needed = [fam.experts_class] + ([fam.causal_lm_class] if cell.get("scope") == "model" else [])
    absent = [cls for cls in needed if not hasattr(module, cls)]
    if not hasattr(importlib.import_module("transformers"), fam.config_class):
        absent.append(fam.config_class)
    if absent:
        return f"{release} has no {name} experts ({', '.join(absent)} missing)"
    forward = getattr(module, fam.experts_class).__dict__.get("forward")
    if forward is None or not hasattr(forward, "__wrapped__"):
        return f"{release}'s {fam.experts_class} does not dispatch through the experts interface " \
               "(no @use_experts_implementation)"
    return None
