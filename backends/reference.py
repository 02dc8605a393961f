"""Reference experts backends with transformers' ExpertsInterface signature.

Each backend is `f(module, hidden_states [T,H], top_k_index [T,K] int64, top_k_weights) -> [T,H]`
and reads the module the way transformers' functions do (`num_experts`, `gate_up_proj` / `up_proj`,
`down_proj`, their `_bias`, `has_gate`, `has_bias`, `is_transposed`, `has_post_expert_norm`,
`_apply_gate`, `act_fn`), so they run on transformers' experts modules as well as on
`backends.experts.Experts`. Expert-parallel sentinels (ids >= num_experts) are not supported.

Routing-weights rule (shared by all three backends):
    top_k_weights.shape == (T, K): weight of slot k of token t               (Mixtral/Qwen style)
    top_k_weights.shape == (T, E): weight of token t for expert top_k_index[t, k], i.e.
                                   top_k_weights.gather(1, top_k_index)     (full router scores)
    anything else: ValueError.
(T, K) is tested first, so when K == E the tensor is read per slot. This is the rule transformers'
own batched_mm/grouped_mm applied before they dropped [T, E] support.

Backends:
    eager       loop over the experts that received tokens (nonzero / torch.where): data-dependent,
                so it is expected to fail under torch.compile(fullgraph=True).
    batched_mm  gather one weight matrix per (token, expert) pair and use torch.bmm.
    grouped_mm  sort pairs by expert, int32 offsets, one grouped matmul per projection.
"""

import torch
from torch.nn import functional as F

from .grouped import grouped_mm


def _slot_weights(module, top_k_index: torch.Tensor, top_k_weights: torch.Tensor) -> torch.Tensor:
    """Return the routing weights as [T, K] (one per selected slot), applying the module docstring's rule."""
    num_tokens, num_top_k = top_k_index.shape
    if top_k_weights.shape == (num_tokens, num_top_k):
        return top_k_weights
    if top_k_weights.shape == (num_tokens, module.num_experts):
        return top_k_weights.gather(1, top_k_index)
    raise ValueError(
        f"top_k_weights must have shape (num_tokens, num_top_k)={(num_tokens, num_top_k)} or "
        f"(num_tokens, num_experts)={(num_tokens, module.num_experts)}, got {tuple(top_k_weights.shape)}"
    )


def _up_params(module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return the first projection's (weight, bias): gate_up_proj for gated experts, up_proj otherwise."""
    name = "gate_up_proj" if getattr(module, "has_gate", True) else "up_proj"
    bias = getattr(module, f"{name}_bias") if getattr(module, "has_bias", False) else None
    return getattr(module, name), bias


def _down_params(module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return the down projection's (weight, bias)."""
    bias = module.down_proj_bias if getattr(module, "has_bias", False) else None
    return module.down_proj, bias


def _activate(module, proj: torch.Tensor) -> torch.Tensor:
    """Gate ([S, 2I] -> [S, I]) with the module's own `_apply_gate`, or apply `act_fn` for non-gated experts."""
    if not getattr(module, "has_gate", True):
        return module.act_fn(proj)
    apply_gate = getattr(module, "_apply_gate", None)
    if apply_gate is not None:
        # The module's own gate when it has one: families customise it (GPT-OSS clamps and uses alpha).
        return apply_gate(proj)
    # Undecorated modules: transformers' default, concatenated [gate; up].
    gate, up = proj.chunk(2, dim=-1)
    return module.act_fn(gate) * up


def _post_norm(module, out: torch.Tensor) -> torch.Tensor:
    """Apply the optional per-expert output norm some families use (has_post_expert_norm)."""
    if getattr(module, "has_post_expert_norm", False):
        return module.post_expert_norm(out)
    return out


def eager_experts_forward(module, hidden_states, top_k_index, top_k_weights):
    """Per-expert loop over the experts that received tokens, like transformers' eager experts."""
    weights = _slot_weights(module, top_k_index, top_k_weights)
    up_weight, up_bias = _up_params(module)
    down_weight, down_bias = _down_params(module)
    is_transposed = getattr(module, "is_transposed", False)

    final = torch.zeros_like(hidden_states)
    with torch.no_grad():
        # [E, K, T] mask; nonzero() gives a data-dependent number of experts to visit, which is what
        # makes this backend untraceable under fullgraph compile.
        expert_mask = F.one_hot(top_k_index, num_classes=module.num_experts).permute(2, 1, 0)
        expert_hit = torch.greater(expert_mask.sum(dim=(-1, -2)), 0).nonzero()

    # The loop body is written inline, as in transformers' eager experts: under torch.compile the loop
    # runs eagerly after the graph break and every Python function it calls is compiled as a frame of
    # its own, so helper functions here would add compiled frames (and recompiles) transformers has not.
    for hit in expert_hit:
        expert = hit[0]
        slot, token = torch.where(expert_mask[expert])
        x = hidden_states[token]
        proj = x @ up_weight[expert] if is_transposed else F.linear(x, up_weight[expert])
        if up_bias is not None:
            proj = proj + up_bias[expert]
        out = _activate(module, proj)
        out = out @ down_weight[expert] if is_transposed else F.linear(out, down_weight[expert])
        if down_bias is not None:
            out = out + down_bias[expert]
        if getattr(module, "has_post_expert_norm", False):
            out = module.post_expert_norm(out)
        final.index_add_(0, token, (out * weights[token, slot, None]).to(final.dtype))
    return final


def _batched_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, is_transposed: bool
) -> torch.Tensor:
    """Per-row projection: x [S, in] with one weight per row, [S, out, in] (or [S, in, out] when transposed)."""
    if is_transposed:
        out = torch.bmm(x.unsqueeze(1), weight).squeeze(1)  # [S,1,in] @ [S,in,out]
    else:
        out = torch.bmm(weight, x.unsqueeze(-1)).squeeze(-1)  # [S,out,in] @ [S,in,1]
    return out if bias is None else out + bias


def batched_mm_experts_forward(module, hidden_states, top_k_index, top_k_weights):
    """Gather one weight matrix per (token, expert) pair and run every pair through torch.bmm."""
    num_tokens, num_top_k = top_k_index.shape
    weights = _slot_weights(module, top_k_index, top_k_weights).reshape(-1)  # [S]
    expert_ids = top_k_index.reshape(-1)  # [S], pair s = (token s // K, slot s % K)
    x = hidden_states.repeat_interleave(num_top_k, dim=0)  # [S, H]
    up_weight, up_bias = _up_params(module)
    down_weight, down_bias = _down_params(module)
    is_transposed = getattr(module, "is_transposed", False)

    proj = _batched_linear(x, up_weight[expert_ids], None if up_bias is None else up_bias[expert_ids], is_transposed)
    out = _batched_linear(
        _activate(module, proj),
        down_weight[expert_ids],
        None if down_bias is None else down_bias[expert_ids],
        is_transposed,
    )
    out = _post_norm(module, out) * weights.unsqueeze(-1)
    # reshape + sum instead of index_add_: deterministic, and accumulates in the product's dtype
    # (fp32 when routing weights are fp32) rather than in the bf16 output.
    return out.view(num_tokens, num_top_k, -1).sum(dim=1).to(hidden_states.dtype)


def _grouped_linear(
    x: torch.Tensor, weight: torch.Tensor, offs: torch.Tensor, bias: torch.Tensor | None, is_transposed: bool
) -> torch.Tensor:
    """Grouped projection of expert-sorted rows; weight is [E, out, in], or [E, in, out] when transposed."""
    # grouped_mm wants [E, in, out]; the untransposed layout is fed as a transposed view (no copy).
    out = grouped_mm(x, weight if is_transposed else weight.transpose(-2, -1), offs)
    return out if bias is None else out + bias


def grouped_mm_experts_forward(module, hidden_states, top_k_index, top_k_weights):
    """Sort (token, expert) pairs by expert and run each projection as one grouped matmul."""
    num_tokens, num_top_k = top_k_index.shape
    weights = _slot_weights(module, top_k_index, top_k_weights).reshape(-1)  # [S]
    expert_ids = top_k_index.reshape(-1)  # [S]

    sorted_ids, perm = torch.sort(expert_ids, stable=True)
    x = hidden_states[perm // num_top_k]  # pair s belongs to token s // K
    # offs[e] = number of pairs routed to experts 0..e, i.e. the int32 cumsum of per-expert counts.
    # searchsorted on the sorted ids gives it with a static [E] shape (bincount's shape is
    # data-dependent) and without histc's float round trip.
    experts = torch.arange(module.num_experts, device=sorted_ids.device, dtype=sorted_ids.dtype)
    offs = torch.searchsorted(sorted_ids, experts, right=True, out_int32=True)

    up_weight, up_bias = _up_params(module)
    down_weight, down_bias = _down_params(module)
    is_transposed = getattr(module, "is_transposed", False)
    proj = _grouped_linear(x, up_weight, offs, None if up_bias is None else up_bias[sorted_ids], is_transposed)
    out = _grouped_linear(
        _activate(module, proj), down_weight, offs, None if down_bias is None else down_bias[sorted_ids], is_transposed
    )
    out = _post_norm(module, out) * weights[perm].unsqueeze(-1)

    # Undo the sort: row i of `out` is pair perm[i].
    out = torch.zeros_like(out).index_copy(0, perm, out)
    return out.view(num_tokens, num_top_k, -1).sum(dim=1).to(hidden_states.dtype)


REFERENCE_BACKENDS = {
    "eager": eager_experts_forward,
    "batched_mm": batched_mm_experts_forward,
    "grouped_mm": grouped_mm_experts_forward,
}
