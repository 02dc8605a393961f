"""Run one cell inside the executor process: build, compile, call, compare with the oracle, collect signals."""

from __future__ import annotations

import re
import statistics
import time
from typing import Any

from harness.measure.signals import SignalCollector, classify_exception, error_record
from harness.measure.steps import (Mismatch, call_outcome, compare, compile_forward, degradations, dispatch_proof,
                                   fresh_inputs, max_rel_error, sync, timed_call)
from harness.sources.load import load_subject

STEADY_CALLS = 5


def run_cell(spec: dict[str, Any]) -> dict[str, Any]:
    """Execute the cell described by `spec` and return {status, error, signals}."""
    cell = spec["cell"]
    if cell.get("scope", "kernel") == "model":
        from harness.measure.model_run import run_model_cell

        return missing_prerequisite(spec, run_model_cell(spec))
    if cell.get("phase", "inference") == "training":
        from harness.measure.training import run_training_cell

        return missing_prerequisite(spec, run_training_cell(spec))
    return missing_prerequisite(spec, _run_kernel_cell(spec))


def missing_prerequisite(spec: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any]:
    """`skipped` (not applicable) when an undocumented transformers backend could not import what it needs.

    deepgemm and sonicmoe load CUDA kernels from the hub through the `kernels` package and raise ImportError
    without it: that says nothing about torch.compile, so the cell did not measure its backend. A documented
    backend raising ImportError stays a failure.
    """
    from harness.sources.release import not_in_release
    from harness.environment.registered import DOCUMENTED

    outcome = not_in_release(spec, outcome)  # a family or backend the release lacks: not applicable (issue 15)
    if outcome["status"] == "skipped":
        return outcome
    cell, error = spec["cell"], outcome.get("error") or {}
    if cell["source"] != "transformers" or cell["backend"] in DOCUMENTED or outcome["status"] == "pass":
        return outcome
    text = " ".join(str(error.get(key) or "") for key in ("type", "cause", "message"))
    # Under torch.compile the ImportError surfaces inside fake-tensor propagation: "got ImportError(...)".
    if not re.search(r"\b(ImportError|ModuleNotFoundError)\b", text) and \
            not re.search(r"got (ImportError|ModuleNotFoundError)\(", error.get("detail") or ""):
        return outcome
    return {**outcome, "status": "skipped",
            "error": {**error, "type": "MissingPrerequisite", "original_type": error.get("type")}}


def _run_kernel_cell(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    cell = spec["cell"]
    device = torch.device(cell["device"])
    dtype = getattr(torch, cell["dtype"])
    torch.manual_seed(spec["seed"])
    collector = SignalCollector(cell)
    signals: dict[str, Any] = {"calls": [], "max_rel_error": None}
    try:
        subject = load_subject(spec, device, dtype)
        compiled = compile_forward(spec, subject)
    except Exception as exc:  # noqa: BLE001 - a backend may raise anything; it is the cell's result
        return {"status": "runtime_error", "error": error_record(exc, "setup"), "signals": signals}
    # Inference cells: no autograd graph, as in generate(); training is a separate phase.
    with collector, torch.no_grad():
        status, error = call_outcome(lambda: _call_all(spec, subject, compiled, device, dtype, signals["calls"]),
                                     signals["calls"], spec["cell"]["mode"] != "uncompiled")
        signals["max_rel_error"] = max_rel_error(signals["calls"])
        if status == "pass":
            status, error = _measure(spec, subject, compiled, collector, device, dtype, signals)
        if status == "pass":
            status, error = dispatch_proof(subject, signals["ops"], signals, spec["cell"]["mode"] != "uncompiled")
    signals.update(subject.info)
    signals.update(collector.result())
    if signals.get("steady_s") is not None and signals["calls"]:
        signals["compile_s"] = max(0.0, signals["calls"][0]["seconds"] - signals["steady_s"])
    signals["degraded"] = degradations(spec, signals)
    return {"status": status, "error": error, "signals": signals}


def _measure(spec, subject, compiled, collector, device, dtype, signals):
    """Steady-state time and one profiled call; a backend failing here (e.g. on a later call) fails the cell."""
    phase = "steady-state calls"
    try:
        signals["steady_s"] = _steady_time(compiled, subject, spec, device, dtype)
        phase = "profiled call"
        signals["ops"], signals["profiled_events"] = collector.profile(
            lambda: compiled(*fresh_inputs(spec, subject, spec["shape"]["tokens"][0], device, dtype, 0)))
    except Exception as exc:  # noqa: BLE001 - the backend's failure is the cell's result
        return classify_exception(exc, spec["cell"]["mode"] != "uncompiled"), error_record(exc, phase)
    return "pass", None


def _call_all(spec, subject, compiled, device, dtype, calls):
    """Call once per token count with fresh inputs, each output against the float64 oracle; the first failure
    raises (the call's own exception, or Mismatch). Each call appends its record to `calls`."""
    from backends.oracle import oracle_forward

    for call, tokens in enumerate(spec["shape"]["tokens"]):
        args = fresh_inputs(spec, subject, tokens, device, dtype, call)
        with timed_call(calls, tokens, device) as record:
            out = compiled(*args)  # a compile or runtime failure raises here
        problem, rel = compare(out, oracle_forward(subject.module, *args), tokens, spec["shape"]["hidden"], dtype)
        record["rel_error"] = rel
        if problem or rel > spec["tolerance"]:
            raise Mismatch(f"call {call} ({tokens} tokens): "
                           + (problem or f"max relative error {rel:.3g} > tolerance {spec['tolerance']:g}"))


def _steady_time(compiled, subject, spec, device, dtype) -> float:
    """Median wall time of a few calls after warm-up, same inputs (the compiled graph is already built)."""
    args = fresh_inputs(spec, subject, spec["shape"]["tokens"][0], device, dtype, 0)
    times = []
    for _ in range(STEADY_CALLS):
        start = time.perf_counter()
        compiled(*args)
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
