"""Float64 oracle for experts modules, written independently of the three reference backends.

It shares no code with backends/reference.py: a plain loop over tokens and their selected experts,
reading every weight in float64, so a bug in a backend's gather/sort/grouping cannot cancel out.
It handles every layout transformers' backends handle (default, is_transposed, has_bias,
has_gate=False, interleaved gate/up, has_post_expert_norm) and both routing-weight shapes:
[T, K] is read per slot, [T, E] is read at the selected expert; (T, K) wins when K == E.

The gate is recomputed here as act_fn(gate) * up, from the layout flags, whenever the module uses a
standard gate (`backends.experts.Experts._apply_gate` or transformers' `_default_apply_gate`); only
a model-specific `_apply_gate` (e.g. GPT-OSS's clamped SwiGLU) is called as the module defines it.
"""

import functools

import torch

from .experts import Experts


@functools.cache
def _transformers_default_gate():
    """Return transformers' `_default_apply_gate`, or None when transformers is not installed."""
    try:
        from transformers.integrations.moe import _default_apply_gate
    except ImportError:
        return None
    return _default_apply_gate


def _gate_split(module) -> str | None:
    """Return how a standard gate splits [2I] ("concatenated"/"interleaved"), or None for a custom gate."""
    gate_fn = getattr(type(module), "_apply_gate", None)
    if gate_fn is Experts._apply_gate:
        return "concatenated" if getattr(module, "is_concatenated", True) else "interleaved"
    if gate_fn is None or gate_fn is _transformers_default_gate():
        # transformers' default gate always chunks, whatever `is_concatenated` says.
        return "concatenated"
    return None


def _float64(module, name: str, device: torch.device, detach: bool = True) -> torch.Tensor:
    """Return the module's parameter `name` as a float64 tensor on `device` (detached unless told otherwise)."""
    param = getattr(module, name)
    return (param.detach() if detach else param).to(device=device, dtype=torch.float64)


def oracle_forward(module, hidden_states, top_k_index, top_k_weights, *, differentiable: bool = False) -> torch.Tensor:
    """Float64 [T, H] experts output computed token by token, selected expert by selected expert.

    differentiable=True keeps the autograd graph to the inputs and the module's parameters (training
    cells: float64 gradients by autograd; pass a float64 copy of the module to get float64 parameter grads).
    """
    detach = not differentiable
    device = hidden_states.device
    num_tokens, num_top_k = top_k_index.shape
    num_experts = module.num_experts
    has_gate = getattr(module, "has_gate", True)
    has_bias = getattr(module, "has_bias", False)
    transposed = getattr(module, "is_transposed", False)
    split = _gate_split(module) if has_gate else None

    if tuple(top_k_weights.shape) == (num_tokens, num_top_k):
        weight_by_expert = False
    elif tuple(top_k_weights.shape) == (num_tokens, num_experts):
        weight_by_expert = True
    else:
        raise ValueError(f"unsupported routing weights shape {tuple(top_k_weights.shape)}")

    first = "gate_up_proj" if has_gate else "up_proj"
    w1 = _float64(module, first, device, detach)
    w2 = _float64(module, "down_proj", device, detach)
    b1 = _float64(module, first + "_bias", device, detach) if has_bias else None
    b2 = _float64(module, "down_proj_bias", device, detach) if has_bias else None
    # Matrices stored [in, out] (transposed layout) are read as [out, in] so one formula serves both.
    if transposed:
        w1, w2 = w1.transpose(1, 2), w2.transpose(1, 2)

    x = (hidden_states.detach() if detach else hidden_states).to(torch.float64)
    # Python floats are faster to index; the differentiable oracle keeps the tensor (0-d elements).
    routing = top_k_weights.detach().to(torch.float64).tolist() if detach else top_k_weights.to(torch.float64)
    experts = top_k_index.tolist()  # one host copy instead of a sync per (token, slot)
    out = torch.zeros(num_tokens, x.shape[1], dtype=torch.float64, device=device)

    for t in range(num_tokens):
        for k in range(num_top_k):
            e = experts[t][k]
            if not 0 <= e < num_experts:
                raise ValueError(f"expert id {e} out of range [0, {num_experts})")
            weight = routing[t][e] if weight_by_expert else routing[t][k]

            h = w1[e] @ x[t]
            if b1 is not None:
                h = h + b1[e]
            if not has_gate:
                h = module.act_fn(h)
            elif split is None:
                h = module._apply_gate(h.unsqueeze(0)).squeeze(0)
            else:
                gate, up = h.chunk(2) if split == "concatenated" else (h[0::2], h[1::2])
                h = module.act_fn(gate) * up

            y = w2[e] @ h
            if b2 is not None:
                y = y + b2[e]
            if getattr(module, "has_post_expert_norm", False):
                y = module.post_expert_norm(y.unsqueeze(0)).squeeze(0).to(torch.float64)
            out[t] += weight * y
    return out
