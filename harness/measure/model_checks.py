"""The uncompiled checks of a model-level cell: every documented way to choose an experts backend.

- from_pretrained(..., experts_implementation=X) as a string and as {"": X} (global);
- set_experts_implementation switching at runtime without reload, outputs agreeing across backends;
- a per-sub-config dict on a tiny multimodal MoE (Qwen3-VL-MoE): each sub-model gets its own.

Every check proves dispatch with the spy of harness/sources/dispatch.py (which function each experts module
really called), not only the config attribute. A failed check raises CheckFailed(kind, message).
"""

from __future__ import annotations

import os
from typing import Any

from harness.sources import dispatch as tf_dispatch

INTERFACE_BACKENDS = ("eager", "batched_mm", "grouped_mm")  # the documented, CPU-capable backends
VOCAB_VL = 128


class CheckFailed(RuntimeError):
    """A model-level check that did not hold; `kind` becomes the error type in results.json."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def build_checkpoint(fam, shape: dict[str, Any], seed: int, folder: str) -> str:
    """Save a tiny random causal LM of the family with save_pretrained; return its folder."""
    import torch

    config = fam.config(shape["hidden"], shape["intermediate"], shape["experts"], shape["top_k"])
    torch.manual_seed(seed)
    path = os.path.join(folder, fam.model_type)
    fam.cls(fam.causal_lm_class)(config).save_pretrained(path)
    return path


def load(path: str, form, dtype, device, auto: str = "AutoModelForCausalLM"):
    """from_pretrained(path, experts_implementation=form) in eval mode on the device."""
    import transformers

    model = getattr(transformers, auto).from_pretrained(path, experts_implementation=form, dtype=dtype)
    return model.to(device).eval()


def input_ids(seed: int, tokens: int, call: int, device, vocab: int):
    """Seeded random prompt [1, tokens] (the same on every machine)."""
    import torch

    gen = torch.Generator().manual_seed(seed * 1000 + 700 + call)
    return torch.randint(0, vocab, (1, tokens), generator=gen).to(device)


def spied_logits(model, ids, expected: dict[str, str] | str, where: str):
    """Logits of one uncompiled forward; MisDispatch unless each experts module ran what `expected` says."""
    import torch

    modules = tf_dispatch.experts_modules(model)
    if not modules:
        raise CheckFailed("MisDispatch", f"{where}: the model has no experts module using the experts interface")
    want = {name: expected for name in modules} if isinstance(expected, str) else expected
    with tf_dispatch.spy(modules) as log, torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits
    try:
        tf_dispatch.check(log, want, where)
    except tf_dispatch.MisDispatch as exc:
        raise CheckFailed("MisDispatch", str(exc)) from None
    return logits


def check_configured(model, key: str, where: str) -> None:
    """Every experts module's config names `key`."""
    wrong = {name: module.config._experts_implementation for name, module in tf_dispatch.experts_modules(model).items()
             if module.config._experts_implementation != key}
    if wrong:
        name, got = next(iter(sorted(wrong.items())))
        raise CheckFailed("MisDispatch", f"{where}: {len(wrong)} experts modules configured {got!r} "
                                         f"(e.g. {name}), expected {key!r}")


def check_load_forms(path: str, key: str, dtype, device, ids, checks: list) -> Any:
    """Load with the string and the {"": X} form; both dispatch X. Returns the string-form model."""
    model = None
    for label, form in (("string", key), ("dict_global", {"": key})):
        loaded = load(path, form, dtype, device)
        where = f"from_pretrained(experts_implementation={form!r})"
        check_configured(loaded, key, where)
        spied_logits(loaded, ids, key, where)
        checks.append({"check": f"load_{label}", "ok": True})
        model = model or loaded
    return model


def check_runtime_switch(model, key: str, ids, reference, tolerance: float, checks: list) -> dict[str, float]:
    """set_experts_implementation to every other backend and back, no reload; outputs agree within tolerance."""
    errors = {}
    for other in [name for name in INTERFACE_BACKENDS if name != key] + [key]:
        model.set_experts_implementation(other)
        where = f"set_experts_implementation({other!r})"
        check_configured(model, other, where)
        logits = spied_logits(model, ids, other, where)
        errors[other] = relative_error(logits, reference)
        if errors[other] > tolerance:
            raise CheckFailed("Mismatch", f"{where}: logits differ from the eager reference by "
                                          f"{errors[other]:.3g} > tolerance {tolerance:g}")
    checks.append({"check": "runtime_switch", "ok": True, "rel_errors": errors})
    return errors


def check_subconfigs(key: str, shape: dict[str, Any], seed: int, folder: str, dtype, device, checks: list) -> None:
    """A per-sub-config dict on a tiny Qwen3-VL-MoE: the text and vision sub-models each get their own."""
    other = "eager" if key != "eager" else "batched_mm"
    path = _vl_checkpoint(shape, seed, folder)
    form = {"text_config": key, "vision_config": other}
    model = load(path, form, dtype, device, auto="AutoModelForImageTextToText")
    where = f"from_pretrained(experts_implementation={form!r})"
    got = model.get_experts_implementation()
    text, vision = model.model.language_model, model.model.visual
    seen = {"text_config": text.config._experts_implementation, "vision_config": vision.config._experts_implementation}
    if seen != form or got.get("text_config") != key or got.get("vision_config") != other:
        raise CheckFailed("MisDispatch", f"{where}: sub-models got {seen}, get_experts_implementation() = {got}")
    ids = input_ids(seed, 5, 0, device, VOCAB_VL)
    spied_logits(model, ids, key, where)
    model.set_experts_implementation({"text_config": other})
    spied_logits(model, ids, other, "set_experts_implementation({'text_config': %r})" % other)
    checks.append({"check": "per_subconfig", "ok": True, "model": type(model).__name__, "form": form})


def relative_error(out, ref) -> float:
    """max|out - ref| / max|ref| in float64."""
    import torch

    out64, ref64 = out.detach().to("cpu", torch.float64), ref.detach().to("cpu", torch.float64)
    if not torch.isfinite(out64).all():
        return float("inf")
    return (out64 - ref64).abs().max().item() / (ref64.abs().max().item() or 1.0)


def _vl_checkpoint(shape: dict[str, Any], seed: int, folder: str) -> str:
    """Save a tiny Qwen3-VL-MoE (MoE text model, small vision tower) and return its folder."""
    import torch
    from transformers import Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration

    hidden = shape["hidden"]
    head_dim = max(8, hidden // 4)
    # mrope splits head_dim/2 rotary frequencies over (t, h, w).
    half = head_dim // 2
    text = {"vocab_size": VOCAB_VL, "hidden_size": hidden, "intermediate_size": 2 * shape["intermediate"],
            "moe_intermediate_size": shape["intermediate"], "num_experts": shape["experts"],
            "num_experts_per_tok": shape["top_k"], "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": head_dim, "max_position_embeddings": 256,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "mrope_section": [half - 2 * (half // 3), half // 3, half // 3]}}
    vision = {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": hidden,
              "patch_size": 4, "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 16,
              "deepstack_visual_indexes": [0]}
    torch.manual_seed(seed)
    path = os.path.join(folder, "qwen3_vl_moe")
    Qwen3VLMoeForConditionalGeneration(Qwen3VLMoeConfig(text_config=text, vision_config=vision)).save_pretrained(path)
    return path
