"""Model-level cells (scope: model): a tiny MoE causal LM of the cell's family, end to end through transformers.

Steps, each recorded in `signals.model_checks`; the first failure decides the cell's status:
1. save_pretrained a tiny random model of the family, from_pretrained it with experts_implementation as a
   string and as {"": X}; every experts module must dispatch X (spy, harness/sources/dispatch.py);
2. set_experts_implementation to each other backend and back, no reload: dispatch follows, and logits agree
   with the reference within the dtype's tolerance;
3. (layout default) a per-sub-config dict on a tiny Qwen3-VL-MoE: text and vision each get their own;
4. the whole model's forward under torch.compile (the cell's mode and fullgraph), once per token count of
   the shape (batch 1, sequence = tokens), logits against the reference; one profiled call;
5. generate() with that compile mode and a static cache (harness/measure/model_generate.py).
The reference is the same checkpoint in the cell's dtype with the eager experts, uncompiled (the experts
themselves are checked against the float64 oracle by kernel cells). Not float64: routing is discrete, and a
float64 router picks other experts at near-ties (seen on NemotronH in bfloat16: one flipped token gave 8.6 %
logits error, the same for all three backends), which says nothing about the backends.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from harness.measure.model_checks import (CheckFailed, build_checkpoint, check_load_forms, check_runtime_switch,
                                  check_subconfigs, input_ids, load, relative_error)
from harness.measure.signals import SignalCollector, classify_exception, error_record
from harness.measure.steps import (Mismatch, call_outcome, degradations, dispatch_proof, max_rel_error,
                                   timed_call)

# Profiler evidence on the compiled whole model: (ops that must appear, ops of another backend). Attention
# runs bmm too, so at model level only grouped_mm tells backends apart (the spy checks do the rest).
MODEL_EVIDENCE = {"eager": ((), ("grouped_mm",)), "batched_mm": ((), ("grouped_mm",)),
                  "grouped_mm": (("grouped_mm",), ())}


def run_model_cell(spec: dict[str, Any]) -> dict[str, Any]:
    """Execute a model-level cell and return {status, error, signals}."""
    import torch

    from harness.sources.transformers_experts import check_imported_source, implementation_key
    from harness.sources.families import VOCAB, family

    cell, shape = spec["cell"], spec["shape"]
    device, dtype = torch.device(cell["device"]), getattr(torch, cell["dtype"])
    signals: dict[str, Any] = {"calls": [], "max_rel_error": None, "model_checks": []}
    folder = tempfile.mkdtemp(prefix="harness-model-")
    phase = "setup"
    try:
        check_imported_source()
        key = implementation_key(spec)
        fam = family(cell["layout"])
        path = build_checkpoint(fam, shape, spec["seed"], folder)
        reference = load(path, "eager", dtype, device)
        signals["model_class"] = type(reference).__name__
        signals["experts_implementation"] = key
        probe = input_ids(spec["seed"], 6, 99, device, VOCAB)
        with torch.no_grad():
            probe_ref = reference(input_ids=probe, use_cache=False).logits
        phase = "uncompiled checks"
        model = check_load_forms(path, key, dtype, device, probe, signals["model_checks"])
        check_runtime_switch(model, key, probe, probe_ref, spec["tolerance"], signals["model_checks"])
        if cell["layout"] == "default":
            check_subconfigs(key, shape, spec["seed"], folder, dtype, device, signals["model_checks"])
        phase = "compiled forward"
        status, error = _forward(spec, model, reference, key, device, signals)
        if status == "pass":
            phase = "generate"
            prompt = input_ids(spec["seed"], 5, 98, device, VOCAB)
            from harness.measure.model_generate import run_generate

            signals["generate"] = run_generate(model, key, cell, prompt, SignalCollector(cell))
            signals["model_checks"].append({"check": "generate", "ok": True})
        return {"status": status, "error": error, "signals": signals}
    except CheckFailed as exc:
        signals["model_checks"].append({"check": phase, "ok": False, "error": str(exc)})
        status = "mismatch" if exc.kind == "Mismatch" else "runtime_error"
        return {"status": status, "error": {"type": exc.kind, "message": str(exc), "phase": phase},
                "signals": signals}
    except Exception as exc:  # noqa: BLE001 - transformers or a backend may raise anything; it is the result
        signals["model_checks"].append({"check": phase, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]})
        compiling = cell["mode"] != "uncompiled" and phase in ("compiled forward", "generate")
        status = classify_exception(exc, compiling) if phase != "setup" else "runtime_error"
        return {"status": status, "error": error_record(exc, phase), "signals": signals}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _forward(spec, model, reference, key: str, device, signals) -> tuple[str, dict[str, Any] | None]:
    """Compiled whole-model forward per token count vs the eager reference; signals like a kernel cell's."""
    import torch

    from harness.sources.subject import Subject
    from harness.sources.families import VOCAB

    cell = spec["cell"]
    forward = model.forward
    if cell["mode"] != "uncompiled":
        forward = torch.compile(model.forward, mode=None if cell["mode"] == "default" else cell["mode"],
                                fullgraph=bool(cell["fullgraph"]))
    collector = SignalCollector(cell)
    with collector, torch.no_grad():
        status, error = call_outcome(lambda: _call_all(spec, forward, reference, device, signals["calls"]),
                                     signals["calls"], cell["mode"] != "uncompiled")
        signals["max_rel_error"] = max_rel_error(signals["calls"])
        if status == "pass":
            ids = input_ids(spec["seed"], spec["shape"]["tokens"][0], 0, device, VOCAB)
            signals["ops"], signals["profiled_events"] = collector.profile(
                lambda: forward(input_ids=ids, use_cache=False))
            expected, forbidden = MODEL_EVIDENCE.get(key, ((), ()))
            subject = Subject(model, model.forward, expected_ops=expected, forbidden_ops=forbidden)
            status, error = dispatch_proof(subject, signals["ops"], signals, spec["cell"]["mode"] != "uncompiled")
    signals.update(collector.result())
    signals["degraded"] = degradations(spec, signals)
    signals["model_checks"].append({"check": "compiled_forward", "ok": status == "pass"})
    return status, error


def _call_all(spec, forward, reference, device, calls):
    """The whole model's forward once per token count, logits against the reference; the first failure raises (the
    call's own exception, or Mismatch)."""
    from harness.sources.families import VOCAB

    for call, tokens in enumerate(spec["shape"]["tokens"]):
        ids = input_ids(spec["seed"], tokens, call, device, VOCAB)
        with timed_call(calls, tokens, device) as record:
            logits = forward(input_ids=ids, use_cache=False).logits
        record["rel_error"] = rel = relative_error(logits, reference(input_ids=ids, use_cache=False).logits)
        if rel > spec["tolerance"]:
            raise Mismatch(f"call {call} ({tokens} tokens): logits max relative error {rel:.3g} "
                           f"> tolerance {spec['tolerance']:g}")
