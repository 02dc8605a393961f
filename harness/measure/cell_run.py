"""Run one cell inside the executor process: build, compile, call, compare with the oracle, collect signals."""

from __future__ import annotations

import re
import statistics
import time
from typing import Any

from harness.config.matrix import CUDAGRAPH_MODES
from harness.measure.signals import SignalCollector, classify_exception, error_record
from harness.sources.subjects import load_subject

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
        compiled = _compile(spec, subject)
    except Exception as exc:  # noqa: BLE001 - a backend may raise anything; it is the cell's result
        return {"status": "runtime_error", "error": error_record(exc, "setup"), "signals": signals}
    # Inference cells: no autograd graph, as in generate(); training is a separate phase.
    with collector, torch.no_grad():
        status, error = _call_all(spec, subject, compiled, device, dtype, signals)
        if status == "pass":
            status, error = _measure(spec, subject, compiled, collector, device, dtype, signals)
        if status == "pass":
            status, error = dispatch_proof(subject, signals["ops"], signals, spec["cell"]["mode"] != "uncompiled")
    signals.update(subject.info)
    signals.update(collector.result())
    if signals.get("steady_s") is not None and signals["calls"]:
        signals["compile_s"] = max(0.0, signals["calls"][0]["seconds"] - signals["steady_s"])
    signals["degraded"] = _degradations(spec, signals)
    return {"status": status, "error": error, "signals": signals}


def dispatch_proof(subject, ops: list[str], signals: dict[str, Any] | None = None,
                   compiled: bool = True) -> tuple[str, dict[str, Any] | None]:
    """("pass", None), or a MisDispatch runtime_error when the profiled ops show another backend ran.

    Expected ops that a compiled graph calls as a custom op are invisible on torch 2.14 (profiler_probe): then
    their absence proves nothing, the uncompiled probe call stays the proof, and `signals` says so.
    """
    missing = [op for op in subject.expected_ops if not any(op in name for name in ops)]
    foreign = [op for op in subject.forbidden_ops if any(op in name for name in ops)]
    if missing and not foreign and compiled:
        from harness.measure.profiler_probe import custom_ops_visible_when_compiled

        if not custom_ops_visible_when_compiled():
            if signals is not None:
                signals["dispatch_evidence"] = (f"expected ops {missing} not seen: this torch calls custom ops from "
                                                "compiled graphs without a profiler event; the uncompiled probe "
                                                "call proved the dispatch")
            return "pass", None
    if missing or foreign:  # the backend the cell names did not run (or not alone)
        what = (f"expected ops {missing} not seen" if missing else "") + ("; " if missing and foreign else "") \
            + (f"ops of another backend {foreign} seen" if foreign else "")
        return "runtime_error", {"type": "MisDispatch", "phase": "profile", "message": f"{what}; ran {ops}"}
    return "pass", None


def _measure(spec, subject, compiled, collector, device, dtype, signals):
    """Steady-state time and one profiled call; a backend failing here (e.g. on a later call) fails the cell."""
    phase = "steady-state calls"
    try:
        signals["steady_s"] = _steady_time(compiled, subject, spec, device, dtype)
        phase = "profiled call"
        signals["ops"], signals["profiled_events"] = collector.profile(
            lambda: compiled(*_inputs(spec, subject, spec["shape"]["tokens"][0], device, dtype, 0)))
    except Exception as exc:  # noqa: BLE001 - the backend's failure is the cell's result
        return classify_exception(exc, spec["cell"]["mode"] != "uncompiled"), error_record(exc, phase)
    return "pass", None


def _compile(spec: dict[str, Any], subject):
    """The callable the cell times: the backend on the module, under torch.compile unless `uncompiled`."""
    import torch

    cell = spec["cell"]

    def forward(hidden_states, top_k_index, top_k_weights):
        return subject.fn(subject.module, hidden_states, top_k_index, top_k_weights)

    if cell["mode"] == "uncompiled":
        return forward
    mode = None if cell["mode"] == "default" else cell["mode"]
    return torch.compile(forward, mode=mode, fullgraph=bool(cell["fullgraph"]))


def _inputs(spec: dict[str, Any], subject, tokens: int, device, dtype, call: int):
    """Fresh random inputs for one call: never zeros, routing as the shape says, seeded per cell and call."""
    import torch

    shape = spec["shape"]
    gen = torch.Generator().manual_seed(spec["seed"] * 1000 + call)
    hidden = torch.randn(tokens, shape["hidden"], generator=gen)
    experts, top_k = shape["experts"], shape["top_k"]
    scores = torch.rand(tokens, experts, generator=gen)
    if shape["routing"] == "skewed":
        # Most tokens go to the first experts; the last expert never gets a token.
        scores = scores + torch.linspace(1.0, 0.0, experts)
        scores[:, -1] = -1.0
    top_k_index = scores.topk(top_k, dim=-1).indices
    top_k_weights = torch.softmax(torch.randn(tokens, top_k, generator=gen), dim=-1)
    if subject.dense_routing:  # [T, E] router scores, zero where an expert was not selected
        top_k_weights = torch.zeros(tokens, experts).scatter(1, top_k_index, top_k_weights)
    return hidden.to(device, dtype), top_k_index.to(device), top_k_weights.to(device, dtype)


def _call_all(spec, subject, compiled, device, dtype, signals):
    """Call once per token count with fresh inputs; stop at the first error; track error vs the oracle."""
    from backends.oracle import oracle_forward

    tolerance = spec["tolerance"]
    compiling = spec["cell"]["mode"] != "uncompiled"
    worst = 0.0
    for call, tokens in enumerate(spec["shape"]["tokens"]):
        args = _inputs(spec, subject, tokens, device, dtype, call)
        start = time.perf_counter()
        try:
            out = compiled(*args)
            _sync(device)
        except Exception as exc:  # noqa: BLE001 - classified below
            signals["calls"].append({"tokens": tokens, "seconds": time.perf_counter() - start, "error": True})
            return classify_exception(exc, compiling), error_record(exc, f"call {call} ({tokens} tokens)")
        seconds = time.perf_counter() - start
        problem, rel = _compare(out, oracle_forward(subject.module, *args), tokens, spec["shape"]["hidden"], dtype)
        signals["calls"].append({"tokens": tokens, "seconds": seconds, "rel_error": rel})
        if rel is not None:
            worst = max(worst, rel)
        signals["max_rel_error"] = worst
        if problem:
            return "mismatch", {"type": "Mismatch", "message": f"call {call} ({tokens} tokens): {problem}",
                                "phase": f"call {call}"}
        if rel > tolerance:
            return "mismatch", {"type": "Mismatch",
                                "message": f"call {call} ({tokens} tokens): max relative error {rel:.3g} "
                                           f"> tolerance {tolerance:g}", "phase": f"call {call}"}
    return "pass", None


def _compare(out, ref, tokens: int, hidden: int, dtype):
    """(problem, relative error): max|out - ref| / max|ref|, or a problem with the output itself."""
    import torch

    if not isinstance(out, torch.Tensor):
        return f"returned {type(out).__name__}, not a tensor", None
    if tuple(out.shape) != (tokens, hidden):
        return f"output shape {tuple(out.shape)}, expected {(tokens, hidden)}", None
    if out.dtype != dtype:
        return f"output dtype {out.dtype}, expected {dtype}", None
    out64 = out.detach().to("cpu", torch.float64)
    ref64 = ref.detach().to("cpu", torch.float64)
    if not torch.isfinite(out64).all():
        return "output has NaN or Inf", None
    scale = ref64.abs().max().item() or 1.0
    return None, (out64 - ref64).abs().max().item() / scale


def _steady_time(compiled, subject, spec, device, dtype) -> float:
    """Median wall time of a few calls after warm-up, same inputs (the compiled graph is already built)."""
    args = _inputs(spec, subject, spec["shape"]["tokens"][0], device, dtype, 0)
    times = []
    for _ in range(STEADY_CALLS):
        start = time.perf_counter()
        compiled(*args)
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _degradations(spec: dict[str, Any], signals: dict[str, Any]) -> list[str]:
    """Ways a passing cell is not a clean pass: recompile storms, CUDA graphs skipped in a CUDA-graph mode."""
    cell = spec["cell"]
    found = []
    if signals.get("recompiles", 0) > spec["max_recompiles"]:
        found.append(f"recompile_storm: {signals['recompiles']} recompiles > {spec['max_recompiles']}")
    if cell["mode"] in CUDAGRAPH_MODES and cell["device"] == "cuda":
        if signals.get("cudagraph_skips"):
            found.append("cudagraphs_skipped: " + "; ".join(signals.get("cudagraph_skip_reasons") or ["(no reason)"]))
        elif signals.get("ops") is not None and not signals.get("cudagraph_launches"):
            found.append("cudagraphs_not_launched: no cudaGraphLaunch in the profiled call")
    return found
