"""The steps every kind of cell shares: compile the forward, fresh inputs, one timed call, compare with the
oracle, the outcome of a call loop, degradations of a pass, and the dispatch proof (kernel, training and model
cells all use them; repro scripts paste them)."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator

from harness.config.matrix import CUDAGRAPH_MODES
from harness.measure.signals import classify_exception, error_record


class Mismatch(AssertionError):
    """A call's output (or a gradient) is malformed, or further from the oracle than the cell's tolerance."""


def compile_forward(spec: dict[str, Any], subject):
    """The callable the cell times: the backend on the module, under torch.compile unless `uncompiled`."""
    import torch

    cell = spec["cell"]

    def forward(hidden_states, top_k_index, top_k_weights):
        return subject.fn(subject.module, hidden_states, top_k_index, top_k_weights)

    if cell["mode"] == "uncompiled":
        return forward
    mode = None if cell["mode"] == "default" else cell["mode"]
    return torch.compile(forward, mode=mode, fullgraph=bool(cell["fullgraph"]))


def fresh_inputs(spec: dict[str, Any], subject, tokens: int, device, dtype, call: int):
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


def compare(out, ref, tokens: int, hidden: int, dtype):
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


@contextlib.contextmanager
def timed_call(calls: list[dict[str, Any]], tokens: int, device) -> Iterator[dict[str, Any]]:
    """The record of one call, appended to `calls`: its tokens and wall time (device synced); `error` if it raised."""
    record: dict[str, Any] = {"tokens": tokens}
    calls.append(record)
    start = time.perf_counter()
    try:
        yield record
        sync(device)
    except BaseException:
        record["error"] = True
        raise
    finally:
        record["seconds"] = time.perf_counter() - start


def call_outcome(loop: Callable[[], None], calls: list[dict[str, Any]], compiling: bool):
    """Run a call loop: ("pass", None), or the status and error record of the call that failed (`mismatch` for
    Mismatch, else compile_error or runtime_error with the root cause)."""
    try:
        loop()
    except Mismatch as exc:
        return "mismatch", {"type": "Mismatch", "message": str(exc), "phase": f"call {len(calls) - 1}"}
    except Exception as exc:  # noqa: BLE001 - a backend may raise anything; it is the cell's result
        phase = f"call {len(calls) - 1} ({calls[-1]['tokens']} tokens)" if calls else "calls"
        return classify_exception(exc, compiling), error_record(exc, phase)
    return "pass", None


def max_rel_error(calls: list[dict[str, Any]]) -> float | None:
    """The largest relative error of any call's output or gradient; None when no call got that far."""
    errors = [c[key] for c in calls for key in ("rel_error", "grad_rel_error") if c.get(key) is not None]
    return max(errors, default=None)


def sync(device) -> None:
    """Wait for the device's queued work, so that a call's time and errors belong to it."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def degradations(spec: dict[str, Any], signals: dict[str, Any]) -> list[str]:
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
