"""Standalone reproduction of compile-matrix cell reference-grouped_mm-reduce-overhead-float16-fullgraph-cuda-decode.

Observed: runtime_error: RuntimeError: Cannot copy between CPU and CUDA tensors during CUDA graph capture unless the CPU tensor is pinned. Please use tensor.pin_memory() or allocate the tensor with pin_memory=True.
      on: torch 2.11.0, transformers 5.17.0, cuda sm90 (NVIDIA H100 80GB HBM3)
Backend: backends.reference:grouped_mm_experts_forward (reference); mode=reduce-overhead, dtype=float16, fullgraph=True, device=cuda, shape=decode {'tokens': [1, 4, 1], 'hidden': 64, 'intermediate': 32, 'experts': 8, 'top_k': 2, 'routing': 'uniform'}, layout=default, scope=kernel, phase=inference.
Harness command: python -m harness run --matrix matrix.yaml --cell reference-grouped_mm-reduce-overhead-float16-fullgraph-cuda-decode

Needs only torch; run it as `python THIS_FILE`.
Exit status: 1 (with the traceback) when the failure reproduces, 0 when every call passes.
"""
from __future__ import annotations

import os
import sys
import types

import torch

# ---- inlined from backends/grouped.py: imported by backends.reference -------------------------------------------------
import re

import torch

FALLBACK_OP = "harness_ref::grouped_mm_fallback"
FALLBACK_BACKWARD_OP = "harness_ref::grouped_mm_fallback_backward"

# dtypes the native kernel accepts at all (float64 raises "Expected mat_a to be Float32, BFloat16 or Float16").
_NATIVE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def native_grouped_mm_available() -> bool:
    """Return True if this torch build has `torch.nn.functional.grouped_mm` or `torch._grouped_mm`."""
    return hasattr(torch.nn.functional, "grouped_mm") or hasattr(torch, "_grouped_mm")


def _torch_release() -> tuple[int, int, int]:
    """Return torch's (major, minor, patch), ignoring local/dev suffixes like transformers' accept_dev=True."""
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", torch.__version__)
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def _has_native_strides(t: torch.Tensor) -> bool:
    """Return True if `t` is row- or column-major in its last two dims with a 16-byte aligned leading stride."""
    # Mirrors the stride check of torch's grouped_mm (aten and meta): one of the last two dims must be
    # contiguous and the other stride a multiple of 16 bytes, otherwise the kernel raises.
    alignment = 16 // t.element_size()
    rows, cols = t.shape[-2], t.shape[-1]
    row_stride, col_stride = t.stride(-2), t.stride(-1)
    if col_stride == 1 and row_stride >= max(1, cols):
        return row_stride % alignment == 0
    if row_stride == 1 and col_stride >= max(1, rows):
        return col_stride % alignment == 0
    return False


def choose_grouped_mm_path(input: torch.Tensor, weight: torch.Tensor) -> str:
    """Return "native" if `grouped_mm(input, weight, offs)` will run torch's kernel, else "fallback".

    Depends only on the tensors' dtype/device/layout, the torch version, the CUDA capability and
    whether torch.compile is tracing. The rules are transformers' `_can_use_grouped_mm`
    (transformers/integrations/moe.py):

    * no native op in this torch build                              -> fallback
    * TPU: native for every dtype, eager or compiled                -> native
    * tracing under torch.compile and weight dtype is not bfloat16   -> fallback
      (the op's meta/fake kernel only accepts bf16, so dynamo cannot trace it)
    * CPU, torch <= 2.10 and input/weight data_ptr not 16-byte aligned -> fallback
      (not checked while tracing: fake tensors have no data pointer, so alignment is assumed)
    * CPU, torch <= 2.8 (no CPU kernel at all)                        -> fallback
    * CUDA: F.grouped_mm needs SM80+; torch._grouped_mm needs SM80+ on torch >= 2.9, SM90 only before

    plus two rules transformers does not have, which only divert inputs the native kernel would
    reject with an error (so they never change the path of an input transformers can run):

    * dtype outside {float32, bfloat16, float16}                      -> fallback
    * a last-two-dims stride that is not a multiple of 16 bytes       -> fallback
    """
    if not native_grouped_mm_available():
        return "fallback"
    device = weight.device
    if device.type == "tpu":
        return "native"
    # grouped_mm() casts input to weight.dtype first, so weight.dtype is the dtype the kernel sees.
    if weight.dtype not in _NATIVE_DTYPES:
        return "fallback"
    if torch.compiler.is_compiling() and weight.dtype != torch.bfloat16:
        return "fallback"
    if device.type == "cpu":
        release = _torch_release()
        # Fake tensors have no data pointer (dynamo cannot trace data_ptr()), so while tracing the
        # alignment is assumed: tensors torch allocates are aligned, only memory-mapped weights may not be.
        unaligned = not torch.compiler.is_compiling() and (weight.data_ptr() % 16 != 0 or input.data_ptr() % 16 != 0)
        if release <= (2, 10, 0) and unaligned:
            return "fallback"
        if release <= (2, 8, 0):
            return "fallback"
    if not (_has_native_strides(input) and _has_native_strides(weight)):
        return "fallback"
    if device.type == "cuda":
        capability = torch.cuda.get_device_capability(device)
        if hasattr(torch.nn.functional, "grouped_mm") or _torch_release() >= (2, 9, 0):
            return "native" if capability >= (8, 0) else "fallback"
        return "native" if capability[0] == 9 else "fallback"
    return "native"


def _native_grouped_mm(input: torch.Tensor, weight: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """Call the public `torch.nn.functional.grouped_mm` if present, else the older private `torch._grouped_mm`."""
    if hasattr(torch.nn.functional, "grouped_mm"):
        return torch.nn.functional.grouped_mm(input, weight, offs=offs)
    return torch._grouped_mm(input, weight, offs=offs)


def grouped_mm(input: torch.Tensor, weight: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """Grouped matmul [S,K] x [G,K,N] -> [S,N] on the path chosen by `choose_grouped_mm_path`."""
    # Neither kernel is autocast-aware: under autocast the input can be fp32 while weights are bf16,
    # so cast the input to the weight dtype (as transformers does) before either path.
    input = input.to(weight.dtype)
    if choose_grouped_mm_path(input, weight) == "native":
        return _native_grouped_mm(input, weight, offs)
    return torch.ops.harness_ref.grouped_mm_fallback(input, weight, offs)


@torch.library.custom_op(FALLBACK_OP, mutates_args=(), schema="(Tensor input, Tensor weight, Tensor offs) -> Tensor")
def _grouped_mm_fallback(input, weight, offs):
    """Loop over groups with plain matmuls; rows past offs[-1] are zero."""
    # A named profiler range: from torch 2.14 compiled graphs call custom ops without a profiler event of
    # their own, and the harness reads the path that ran from profiler event names.
    with torch.profiler.record_function(FALLBACK_OP):
        output = input.new_zeros(input.size(0), weight.size(2))
        start = 0
        # One device->host sync for all offsets instead of one per group.
        for group, end in enumerate(offs.tolist()):
            if end > start:
                output[start:end] = input[start:end] @ weight[group]
            start = end
    return output


@_grouped_mm_fallback.register_fake
def _grouped_mm_fallback_fake(input, weight, offs):
    """Shape/dtype-only implementation of the fallback for torch.compile tracing."""
    torch._check(input.dim() == 2, lambda: f"input must be 2D [S, K], got {tuple(input.shape)}")
    torch._check(weight.dim() == 3, lambda: f"weight must be 3D [G, K, N], got {tuple(weight.shape)}")
    torch._check(offs.dim() == 1 and offs.size(0) == weight.size(0), lambda: "offs must be 1D with one entry per group")
    torch._check(input.size(1) == weight.size(1), lambda: "contraction dims of input and weight differ")
    return input.new_empty(input.size(0), weight.size(2))


@torch.library.custom_op(
    FALLBACK_BACKWARD_OP,
    mutates_args=(),
    schema="(Tensor input, Tensor weight, Tensor offs, Tensor grad_output) -> (Tensor, Tensor)",
)
def _grouped_mm_fallback_backward(input, weight, offs, grad_output):
    """Gradients of the fallback w.r.t. input and weight, group by group."""
    grad_input = torch.zeros_like(input)
    grad_weight = torch.zeros_like(weight)
    start = 0
    for group, end in enumerate(offs.tolist()):
        if end > start:
            grad_input[start:end] = grad_output[start:end] @ weight[group].transpose(0, 1)
            grad_weight[group] = input[start:end].transpose(0, 1) @ grad_output[start:end]
        start = end
    return grad_input, grad_weight


@_grouped_mm_fallback_backward.register_fake
def _grouped_mm_fallback_backward_fake(input, weight, offs, grad_output):
    """Shape/dtype-only implementation of the fallback backward."""
    return torch.empty_like(input), torch.empty_like(weight)


def _setup_context(ctx, inputs, output):
    """Save what the backward needs; offs is an integer tensor and gets no gradient."""
    input, weight, offs = inputs
    ctx.save_for_backward(input, weight, offs)


def _backward(ctx, grad_output):
    """Autograd formula of the fallback, delegated to the backward custom op."""
    input, weight, offs = ctx.saved_tensors
    grad_input, grad_weight = torch.ops.harness_ref.grouped_mm_fallback_backward(
        input, weight, offs, grad_output.contiguous()
    )
    return grad_input, grad_weight, None


_grouped_mm_fallback.register_autograd(_backward, setup_context=_setup_context)

# ---- inlined from backends/reference.py: grouped_mm_experts_forward and its helpers -----------------------------------
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


def _post_norm(module, out: torch.Tensor) -> torch.Tensor:
    """Apply the optional per-expert output norm some families use (has_post_expert_norm)."""
    if getattr(module, "has_post_expert_norm", False):
        return module.post_expert_norm(out)
    return out


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

REFERENCE_BACKENDS = {"grouped_mm": grouped_mm_experts_forward}

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
          'backend': 'grouped_mm',
          'mode': 'reduce-overhead',
          'dtype': 'float16',
          'fullgraph': True,
          'device': 'cuda',
          'shape': 'decode',
          'layout': 'default',
          'scope': 'kernel',
          'phase': 'inference'},
 'impl': 'backends.reference:grouped_mm_experts_forward',
 'shape': {'tokens': [1, 4, 1],
           'hidden': 64,
           'intermediate': 32,
           'experts': 8,
           'top_k': 2,
           'routing': 'uniform'},
 'tolerance': 0.005,
 'max_recompiles': 1,
 'seed': 52953}


def main() -> int:
    """Build the cell's module, compile the backend as the cell does, call it once per token count."""
    cell, shape = SPEC["cell"], SPEC["shape"]
    device, dtype = torch.device(cell["device"]), getattr(torch, cell["dtype"])
    print(f"{versions()}, device {device}, cell {cell}")
    torch.manual_seed(SPEC["seed"])
    subject = build_subject(device, dtype)
    module = subject.module

    def forward(hidden_states, top_k_index, top_k_weights):
        return grouped_mm_experts_forward(module, hidden_states, top_k_index, top_k_weights)

    compiled = torch.compile(forward, mode='reduce-overhead', fullgraph=True)
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
