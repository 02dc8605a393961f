"""Standalone reproduction of compile-matrix cell reference-eager-default-bfloat16-fullgraph-cpu-decode.

Observed: compile_error: torch._dynamo.exc.UserError: Consider annotating your code using torch._check*(). Could not extract specialized integer from data-dependent expression u0 (unhinted: u0).  (Size-like symbols: u0)
      on: torch 2.13.0, transformers 5.17.0, cpu
Backend: backends.reference:eager_experts_forward (reference); mode=default, dtype=bfloat16, fullgraph=True, device=cpu, shape=decode {'tokens': [1, 4, 1], 'hidden': 64, 'intermediate': 32, 'experts': 8, 'top_k': 2, 'routing': 'uniform'}, layout=default, scope=kernel, phase=inference.
Harness command: python -m harness run --matrix matrix.yaml --cell reference-eager-default-bfloat16-fullgraph-cpu-decode

Needs only torch; run it as `python THIS_FILE`.
Exit status: 1 (with the traceback) when the failure reproduces, 0 when every call passes.
"""
from __future__ import annotations

import os
import sys
import types

import torch

# ---- inlined from backends/reference.py: eager_experts_forward and its helpers ----------------------------------------
import torch
from torch.nn import functional as F


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

REFERENCE_BACKENDS = {"eager": eager_experts_forward}

# ---- inlined from backends/layouts.py: imported by backends.experts ---------------------------------------------------
# layout name -> constructor flags of backends.experts.Experts. Each names a combination a real model family ships.
LAYOUT_FLAGS = {
    "default": {},  # Mixtral, DeepSeek-V2/V3, Qwen2/3-MoE
    "transposed": {"is_transposed": True},  # Aria
    "bias": {"has_bias": True},  # not shipped as such; isolates the bias handling
    "transposed_bias": {"is_transposed": True, "has_bias": True},  # OpenAI privacy filter
    "interleaved": {"is_concatenated": False},  # isolates the interleaved gate/up handling
    "gpt_oss": {"is_transposed": True, "has_bias": True, "is_concatenated": False},  # GPT-OSS (with SiLU gate)
    "non_gated": {"has_gate": False},  # NemotronH
    "deepseek_v2": {},  # default weights; routing weights arrive as [T, E] (see DENSE_ROUTING_LAYOUTS)
}
LAYOUTS = tuple(LAYOUT_FLAGS)
# Layouts whose routing weights are the full [T, E] router scores rather than [T, K] (DeepSeek-V2 style).
DENSE_ROUTING_LAYOUTS = ("deepseek_v2",)

# ---- inlined from backends/experts.py: the test experts module --------------------------------------------------------
import torch
from torch import nn


class Experts(nn.Module):
    """Collection of expert weights stored as 3D tensors, in one of transformers' layouts."""

    def __init__(
        self,
        num_experts: int,
        hidden_dim: int,
        intermediate_dim: int,
        *,
        is_transposed: bool = False,
        has_bias: bool = False,
        has_gate: bool = True,
        is_concatenated: bool = True,
        act_fn: nn.Module | None = None,
        experts_implementation="eager",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ):
        super().__init__()
        self.num_experts = num_experts
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        # The flags transformers' `use_experts_implementation` decorator sets, under the same names.
        self.is_transposed = is_transposed
        self.has_bias = has_bias
        self.has_gate = has_gate
        self.is_concatenated = is_concatenated
        self.has_post_expert_norm = False
        self._is_expert_parallel = False
        self.act_fn = act_fn if act_fn is not None else nn.SiLU()
        # A name from REFERENCE_BACKENDS or a callable with the ExpertsInterface signature.
        self.experts_implementation = experts_implementation

        factory = {"dtype": dtype, "device": device}
        up_dim = 2 * intermediate_dim if has_gate else intermediate_dim
        up_name = "gate_up_proj" if has_gate else "up_proj"
        up_shape = (num_experts, hidden_dim, up_dim) if is_transposed else (num_experts, up_dim, hidden_dim)
        down_shape = (
            (num_experts, intermediate_dim, hidden_dim) if is_transposed else (num_experts, hidden_dim, intermediate_dim)
        )
        self.register_parameter(up_name, nn.Parameter(torch.empty(up_shape, **factory)))
        self.down_proj = nn.Parameter(torch.empty(down_shape, **factory))
        if has_bias:
            self.register_parameter(f"{up_name}_bias", nn.Parameter(torch.empty(num_experts, up_dim, **factory)))
            self.down_proj_bias = nn.Parameter(torch.empty(num_experts, hidden_dim, **factory))

    def _apply_gate(self, gate_up_out: torch.Tensor) -> torch.Tensor:
        """Split [..., 2I] into gate and up (concatenated or interleaved) and return act_fn(gate) * up."""
        if self.is_concatenated:
            gate, up = gate_up_out.chunk(2, dim=-1)
        else:
            gate, up = gate_up_out[..., 0::2], gate_up_out[..., 1::2]
        return self.act_fn(gate) * up

    def forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor):
        """Run the backend named by `experts_implementation` on [T,H] tokens; returns [T,H]."""
        implementation = self.experts_implementation
        if not callable(implementation):
            implementation = REFERENCE_BACKENDS[implementation]
        return implementation(self, hidden_states, top_k_index, top_k_weights)

    def extra_repr(self) -> str:
        """Show sizes and layout flags in print(module)."""
        return (
            f"num_experts={self.num_experts}, hidden_dim={self.hidden_dim}, intermediate_dim={self.intermediate_dim}, "
            f"is_transposed={self.is_transposed}, has_bias={self.has_bias}, has_gate={self.has_gate}, "
            f"is_concatenated={self.is_concatenated}"
        )


def make_experts(
    num_experts: int,
    hidden: int,
    intermediate: int,
    *,
    layout: str = "default",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    seed: int = 0,
    experts_implementation="eager",
) -> Experts:
    """Build an `Experts` in the named layout (see LAYOUTS) with seeded random weights giving O(1) outputs."""
    if layout not in LAYOUT_FLAGS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    module = Experts(
        num_experts,
        hidden,
        intermediate,
        **LAYOUT_FLAGS[layout],
        experts_implementation=experts_implementation,
        dtype=dtype,
        device=device,
    )
    _init_weights(module, seed)
    return module


def _init_weights(module: Experts, seed: int) -> None:
    """Fill the parameters from a seeded CPU generator, layout-independently."""
    # The logical weights (gate, up: [E, I, H]; down: [E, H, I]) are drawn first and only then packed
    # into the module's layout, so the same seed gives the same function in every gated layout
    # (default, transposed, interleaved agree up to rounding), which the tests exploit.
    # Scales: x ~ N(0, 1) of size H, so N(0, 1/H) projections give O(1) pre-activations and
    # N(0, 1/I) down-projections give O(1) outputs; biases are O(0.1-0.5) so they visibly matter.
    E, H, I = module.num_experts, module.hidden_dim, module.intermediate_dim
    gen = torch.Generator().manual_seed(seed)
    gate = torch.randn(E, I, H, generator=gen) / H**0.5
    up = torch.randn(E, I, H, generator=gen) / H**0.5
    down = torch.randn(E, H, I, generator=gen) / I**0.5
    gate_bias = 0.5 * torch.randn(E, I, generator=gen)
    up_bias = 0.5 * torch.randn(E, I, generator=gen)
    down_bias = 0.1 * torch.randn(E, H, generator=gen)

    if module.has_gate:
        if module.is_concatenated:
            up_weight = torch.cat([gate, up], dim=1)  # [E, 2I, H]
            up_bias_packed = torch.cat([gate_bias, up_bias], dim=1)
        else:
            up_weight = torch.stack([gate, up], dim=2).reshape(E, 2 * I, H)  # rows g0, u0, g1, u1, ...
            up_bias_packed = torch.stack([gate_bias, up_bias], dim=2).reshape(E, 2 * I)
        up_name = "gate_up_proj"
    else:
        up_weight, up_bias_packed, up_name = up, up_bias, "up_proj"

    if module.is_transposed:
        up_weight, down = up_weight.transpose(1, 2), down.transpose(1, 2)
    with torch.no_grad():
        getattr(module, up_name).copy_(up_weight)
        module.down_proj.copy_(down)
        if module.has_bias:
            getattr(module, f"{up_name}_bias").copy_(up_bias_packed)
            module.down_proj_bias.copy_(down_bias)

def versions() -> str:
    """The versions a bug report needs."""
    return f"torch {torch.__version__}"


def build_subject(device, dtype):
    """The cell's experts module (backends/experts.py, the cell's layout, seeded weights) and its routing shape."""
    cell, shape = SPEC["cell"], SPEC["shape"]
    module = make_experts(shape["experts"], shape["hidden"], shape["intermediate"], layout=cell["layout"],
                          dtype=dtype, device=device, seed=SPEC["seed"])
    return types.SimpleNamespace(module=module, dense_routing=cell["layout"] in DENSE_ROUTING_LAYOUTS)

# ---- inlined from backends/oracle.py: the float64 oracle --------------------------------------------------------------
import functools

import torch


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
                size = h.shape[0] // 2
                gate, up = (h[:size], h[size:]) if split == "concatenated" else (h[0::2], h[1::2])
                h = module.act_fn(gate) * up

            y = w2[e] @ h
            if b2 is not None:
                y = y + b2[e]
            if getattr(module, "has_post_expert_norm", False):
                y = module.post_expert_norm(y.unsqueeze(0)).squeeze(0).to(torch.float64)
            out[t] += weight * y
    return out

# ---- inlined from harness/cell_run.py: inputs, comparison and device sync, as the harness does them -------------------
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


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


SPEC = {'cell': {'source': 'reference',
          'backend': 'eager',
          'mode': 'default',
          'dtype': 'bfloat16',
          'fullgraph': True,
          'device': 'cpu',
          'shape': 'decode',
          'layout': 'default',
          'scope': 'kernel',
          'phase': 'inference'},
 'impl': 'backends.reference:eager_experts_forward',
 'shape': {'tokens': [1, 4, 1],
           'hidden': 64,
           'intermediate': 32,
           'experts': 8,
           'top_k': 2,
           'routing': 'uniform'},
 'tolerance': 0.03,
 'max_recompiles': 1,
 'seed': 9975}


def main() -> int:
    """Build the cell's module, compile the backend as the cell does, call it once per token count."""
    cell, shape = SPEC["cell"], SPEC["shape"]
    device, dtype = torch.device(cell["device"]), getattr(torch, cell["dtype"])
    print(f"{versions()}, device {device}, cell {cell}")
    torch.manual_seed(SPEC["seed"])
    subject = build_subject(device, dtype)
    module = subject.module

    def forward(hidden_states, top_k_index, top_k_weights):
        return eager_experts_forward(module, hidden_states, top_k_index, top_k_weights)

    compiled = torch.compile(forward, mode=None, fullgraph=True)
    with torch.no_grad():  # inference cells run as generate() does
        for call, tokens in enumerate(shape["tokens"]):
            args = _inputs(SPEC, subject, tokens, device, dtype, call)
            out = compiled(*args)  # a compile or runtime failure raises here, with its traceback
            problem, rel = _compare(out, oracle_forward(module, *args), tokens, shape["hidden"], dtype)
            if problem:
                raise AssertionError(f"call {call} ({tokens} tokens): {problem}")
            print(f"call {call} ({tokens} tokens): max relative error {rel:.3g} "
                  f"(tolerance {SPEC['tolerance']:g})")
            if rel > SPEC["tolerance"]:
                raise AssertionError(f"call {call} ({tokens} tokens): max relative error {rel:.3g} > "
                                     f"tolerance {SPEC['tolerance']:g}")
    print("did not reproduce: every call passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
