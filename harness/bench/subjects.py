"""The functions a benchmark times and the experts module they run on."""

from __future__ import annotations

import math
from typing import Callable

import torch

from harness.bench.config import BenchShape, Item

# What transformers-eager is: the unwrapped forward of a transformers experts class, run on our module.
TRANSFORMERS_EAGER_CLASS = "transformers.models.qwen2_moe.modeling_qwen2_moe.Qwen2MoeExperts"


class BackendUnavailable(Exception):
    """The backend cannot run in this environment; the message says why."""


def backend_function(source: str, name: str) -> Callable:
    """The ExpertsInterface function `fn(module, hidden_states, top_k_index, top_k_weights)` of backend `name` of
    `source` (transformers or reference)."""
    if source == "reference":
        from backends.reference import REFERENCE_BACKENDS

        return REFERENCE_BACKENDS[name]
    try:
        if name == "eager":
            return _transformers_eager()
        from transformers.integrations import moe
    except ImportError as exc:
        raise BackendUnavailable(f"transformers is not importable: {exc}") from None
    fn = getattr(moe, f"{name}_experts_forward", None)
    if fn is None:
        raise BackendUnavailable(f"transformers.integrations.moe has no {name}_experts_forward")
    return fn


def _transformers_eager() -> Callable:
    """Qwen2MoeExperts.forward without the `use_experts_implementation` dispatch wrapper (its eager loop)."""
    from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeExperts

    return getattr(Qwen2MoeExperts.forward, "__wrapped__", Qwen2MoeExperts.forward)


def build_experts(shape: BenchShape, dtype: torch.dtype, device: str, seed: int):
    """An `Experts` in transformers' default layout, random weights drawn on the device (fast for big shapes)."""
    from backends.experts import Experts

    module = Experts(shape.experts, shape.hidden, shape.intermediate, dtype=dtype, device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        # N(0, 1/H) up projections and N(0, 1/I) down projections keep activations O(1) (see make_experts).
        module.gate_up_proj.normal_(0.0, 1.0 / math.sqrt(shape.hidden), generator=gen)
        module.down_proj.normal_(0.0, 1.0 / math.sqrt(shape.intermediate), generator=gen)
    return module.eval().requires_grad_(False)


def compiled(fn: Callable, item: Item) -> Callable:
    """`fn` as the item's compile setting runs it: torch.compile defaults (dynamic=None, fullgraph=False)."""
    if item.mode == "uncompiled":
        return fn
    # fullgraph=False and dynamic=None are what transformers' CompileConfig uses for generate().
    return torch.compile(fn, mode=None if item.mode == "default" else item.mode, fullgraph=False, dynamic=None)


def uses_cudagraphs(item: Item, device: str) -> bool:
    """True when the item's compile setting captures CUDA graphs on this device."""
    return device == "cuda" and item.mode in ("reduce-overhead", "max-autotune")
