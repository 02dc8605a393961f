"""Training-phase kernel cells: forward and backward under compile, gradients against the float64 oracle.

Each call draws fresh inputs (as inference cells do), makes the hidden states and routing weights
require grad, runs the (compiled) backend, and backpropagates a fixed random cotangent. The oracle is
backends/oracle.py run differentiably on a float64 copy of the module: autograd gives float64
gradients of the inputs and of every expert parameter, and each gradient is compared like the output
(max|g - ref| / max|ref|). The documentation covers inference only, so matrix.yaml starts these cells
as observe-only; the results say what happens.
"""

from __future__ import annotations

import copy
from typing import Any

# Reused from the inference path so both phases build, seed and judge calls the same way.
from harness.measure.steps import (Mismatch, call_outcome, compare, compile_forward, degradations, dispatch_proof,
                                   fresh_inputs, max_rel_error, sync, timed_call)
from harness.measure.signals import SignalCollector, classify_exception, error_record
from harness.sources.load import load_subject


def run_training_cell(spec: dict[str, Any]) -> dict[str, Any]:
    """Execute a training cell and return {status, error, signals}; signals add per-tensor `grad_errors`."""
    import torch

    cell = spec["cell"]
    device, dtype = torch.device(cell["device"]), getattr(torch, cell["dtype"])
    torch.manual_seed(spec["seed"])
    collector = SignalCollector(cell)
    signals: dict[str, Any] = {"calls": [], "max_rel_error": None, "grad_errors": {}}
    try:
        subject = load_subject(spec, device, dtype)
        reference = copy.deepcopy(subject.module).to(torch.float64)  # before compile: a plain module
        compiled = compile_forward(spec, subject)
    except Exception as exc:  # noqa: BLE001 - a backend may raise anything; it is the cell's result
        return {"status": "runtime_error", "error": error_record(exc, "setup"), "signals": signals}
    compiling = cell["mode"] != "uncompiled"
    with collector, torch.enable_grad():
        status, error = call_outcome(lambda: _train_all(spec, subject, reference, compiled, device, dtype, signals),
                                     signals["calls"], compiling)
        signals["max_rel_error"] = max_rel_error(signals["calls"])
        if status == "pass":
            try:
                signals["ops"], signals["profiled_events"] = collector.profile(
                    lambda: _step(spec, subject, compiled, device, dtype, 0))
                status, error = dispatch_proof(subject, signals["ops"], signals, compiling)
            except Exception as exc:  # noqa: BLE001 - the backend's failure is the cell's result
                status, error = classify_exception(exc, compiling), error_record(exc, "profiled call")
    signals.update(subject.info)
    signals.update(collector.result())
    signals["degraded"] = degradations(spec, signals)
    return {"status": status, "error": error, "signals": signals}


def _train_all(spec, subject, reference, compiled, device, dtype, signals):
    """One forward+backward per token count, output and gradients against the float64 oracle; the first failure
    raises (the call's own exception, or Mismatch)."""
    tolerance = spec["tolerance"]
    for call, tokens in enumerate(spec["shape"]["tokens"]):
        with timed_call(signals["calls"], tokens, device) as record:
            out, grads, args = _step(spec, subject, compiled, device, dtype, call)
        ref_out, ref_grads = _oracle_step(spec, reference, args, call)
        problem, record["rel_error"] = compare(out, ref_out, tokens, spec["shape"]["hidden"], dtype)
        grad_problem, grad_errors = _compare_grads(grads, ref_grads)
        record["grad_rel_error"] = max(grad_errors.values(), default=None)
        for name, value in grad_errors.items():
            signals["grad_errors"][name] = max(value, signals["grad_errors"].get(name, 0.0))
        if problem or grad_problem:
            raise Mismatch(f"call {call} ({tokens} tokens): {problem or grad_problem}")
        over = {name: value for name, value in {"output": record["rel_error"], **grad_errors}.items()
                if value > tolerance}
        if over:
            name, value = max(over.items(), key=lambda item: item[1])
            raise Mismatch(f"call {call} ({tokens} tokens): max relative error of {name} {value:.3g} "
                           f"> tolerance {tolerance:g}")


def _step(spec, subject, compiled, device, dtype, call: int):
    """Forward + backward of the (compiled) backend; returns (output, {tensor name: grad}, the inputs)."""
    hidden, index, weights = fresh_inputs(spec, subject, spec["shape"]["tokens"][call], device, dtype, call)
    hidden.requires_grad_(True)
    weights.requires_grad_(True)
    subject.module.zero_grad(set_to_none=True)
    out = compiled(hidden, index, weights)
    (out.float() * _cotangent(spec, out.shape[0], call).to(out.device)).sum().backward()
    sync(device)
    grads = {"hidden_states": hidden.grad, "routing_weights": weights.grad}
    grads.update({name: param.grad for name, param in subject.module.named_parameters()})
    return out.detach(), grads, (hidden.detach(), index, weights.detach())


def _oracle_step(spec, reference, args, call: int):
    """The oracle's float64 output and autograd gradients for the same inputs and cotangent."""
    import torch

    from backends.oracle import oracle_forward

    hidden, index, weights = args
    hidden64 = hidden.to(torch.float64).requires_grad_(True)
    weights64 = weights.to(torch.float64).requires_grad_(True)
    reference.zero_grad(set_to_none=True)
    out = oracle_forward(reference, hidden64, index, weights64, differentiable=True)
    (out * _cotangent(spec, out.shape[0], call).to(out.device, torch.float64)).sum().backward()
    grads = {"hidden_states": hidden64.grad, "routing_weights": weights64.grad}
    grads.update({name: param.grad for name, param in reference.named_parameters()})
    return out.detach(), grads


def _cotangent(spec, tokens: int, call: int):
    """A fixed random dL/d(output) per cell and call (float32, CPU); never zero, so every gradient matters."""
    import torch

    gen = torch.Generator().manual_seed(spec["seed"] * 1000 + 500 + call)
    return torch.randn(tokens, spec["shape"]["hidden"], generator=gen)


def _compare_grads(grads: dict[str, Any], ref_grads: dict[str, Any]) -> tuple[str | None, dict[str, float]]:
    """(problem, {name: relative error}) for every gradient the oracle has; a missing or non-finite one is a problem."""
    import torch

    errors: dict[str, float] = {}
    for name, ref in ref_grads.items():
        if ref is None:
            continue
        got = grads.get(name)
        if got is None:
            if ref.abs().max().item() == 0.0:
                continue  # nothing flows there in the oracle either (e.g. a never-selected expert's bias)
            return f"no gradient for {name} (the oracle's is nonzero)", errors
        got64 = got.detach().to("cpu", torch.float64)
        ref64 = ref.detach().to("cpu", torch.float64)
        if got64.shape != ref64.shape:
            return f"gradient of {name} has shape {tuple(got64.shape)}, expected {tuple(ref64.shape)}", errors
        if not torch.isfinite(got64).all():
            return f"gradient of {name} has NaN or Inf", errors
        scale = ref64.abs().max().item() or 1.0
        errors[name] = (got64 - ref64).abs().max().item() / scale
    return None, errors
