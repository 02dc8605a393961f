"""Grouped matmul dispatcher: torch's native grouped_mm kernel, or a compile-safe custom-op fallback.

`grouped_mm(input, weight, offs)` computes, for every group g, the rows
`input[offs[g-1]:offs[g]] @ weight[g]` (with `offs[-1] == 0`), i.e. the contract of
`torch.nn.functional.grouped_mm` with a 2D input and a 3D weight:

    input  [S, K]   rows sorted by group
    weight [G, K, N]
    offs   [G] int32, cumulative row counts (end offset of each group)
    ->     [S, N]

Rows at or after `offs[-1]` belong to no group: the fallback writes zeros there, the native
kernel leaves them uninitialised, so callers must not read them.

The harness tells the two paths apart by profiler event names: the fallback shows up as
`harness_ref::grouped_mm_fallback` (and `..._backward` in training), the native kernel as
`aten::_grouped_mm`. Keep those names stable.
"""

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


# --- Fallback custom op -------------------------------------------------------------------------
# torch.compiler.disable does not work under fullgraph=True, so the Python loop over groups is hidden
# behind a custom op: dynamo/inductor see one opaque node with a fake (shape-only) implementation.
# The backward is a second custom op for the same reason: otherwise autograd would trace into the loop.


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
