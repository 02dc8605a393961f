"""Compile-matrix cell reference-grouped_mm-reduce-overhead-float16-fullgraph-cuda-decode, from `python -m harness
repro`.
Observed by the harness (torch 2.11.0, transformers 5.17.0, cuda sm90 (NVIDIA H200)): runtime_error: RuntimeError:
Cannot copy between CPU and CUDA tensors during CUDA graph capture unless the CPU tensor is pinned. Plea...
Run `python THIS_FILE` (torch only): exit 1 and the traceback if the failure reproduces, 0 if all passes.
"""

import contextlib
import platform
import re
import types

import torch
from torch import nn

# backends/grouped.py, backends/reference.py: the code under test
def _slot_weights(module, top_k_index: torch.Tensor, top_k_weights: torch.Tensor) -> torch.Tensor:
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
    return (module.gate_up_proj, None)
def _down_params(module) -> tuple[torch.Tensor, torch.Tensor | None]:
    return (module.down_proj, None)
def native_grouped_mm_available() -> bool:
    return hasattr(torch.nn.functional, "grouped_mm") or hasattr(torch, "_grouped_mm")
FALLBACK_OP = "harness_ref::grouped_mm_fallback"
@torch.library.custom_op(FALLBACK_OP, mutates_args=(), schema="(Tensor input, Tensor weight, Tensor offs) -> Tensor")
def _grouped_mm_fallback(input, weight, offs):
    with torch.profiler.record_function(FALLBACK_OP):
        output = input.new_zeros(input.size(0), weight.size(2))
        start = 0
        for group, end in enumerate(offs.tolist()):
            if end > start:
                output[start:end] = input[start:end] @ weight[group]
            start = end
    return output
@_grouped_mm_fallback.register_fake
def _grouped_mm_fallback_fake(input, weight, offs):
    torch._check(input.dim() == 2, lambda: f"input must be 2D [S, K], got {tuple(input.shape)}")
    torch._check(weight.dim() == 3, lambda: f"weight must be 3D [G, K, N], got {tuple(weight.shape)}")
    torch._check(offs.dim() == 1 and offs.size(0) == weight.size(0), lambda: "offs must be 1D with one entry per group")
    torch._check(input.size(1) == weight.size(1), lambda: "contraction dims of input and weight differ")
    return input.new_empty(input.size(0), weight.size(2))
FALLBACK_BACKWARD_OP = "harness_ref::grouped_mm_fallback_backward"
@torch.library.custom_op(
    FALLBACK_BACKWARD_OP,
    mutates_args=(),
    schema="(Tensor input, Tensor weight, Tensor offs, Tensor grad_output) -> (Tensor, Tensor)",
)
def _grouped_mm_fallback_backward(input, weight, offs, grad_output):
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
    return torch.empty_like(input), torch.empty_like(weight)
def _backward(ctx, grad_output):
    input, weight, offs = ctx.saved_tensors
    grad_input, grad_weight = torch.ops.harness_ref.grouped_mm_fallback_backward(
        input, weight, offs, grad_output.contiguous()
    )
    return grad_input, grad_weight, None
def _setup_context(ctx, inputs, output):
    input, weight, offs = inputs
    ctx.save_for_backward(input, weight, offs)
_grouped_mm_fallback.register_autograd(_backward, setup_context=_setup_context)
_NATIVE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
def _has_native_strides(t: torch.Tensor) -> bool:
    alignment = 16 // t.element_size()
    rows, cols = t.shape[-2], t.shape[-1]
    row_stride, col_stride = t.stride(-2), t.stride(-1)
    if col_stride == 1 and row_stride >= max(1, cols):
        return row_stride % alignment == 0
    if row_stride == 1 and col_stride >= max(1, rows):
        return col_stride % alignment == 0
    return False
def _torch_release() -> tuple[int, int, int]:
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", torch.__version__)
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)
def choose_grouped_mm_path(input: torch.Tensor, weight: torch.Tensor) -> str:
    if not native_grouped_mm_available():
        return "fallback"
    device = weight.device
    if weight.dtype not in _NATIVE_DTYPES:
        return "fallback"
    if torch.compiler.is_compiling() and weight.dtype != torch.bfloat16:
        return "fallback"
    if not (_has_native_strides(input) and _has_native_strides(weight)):
        return "fallback"
    capability = torch.cuda.get_device_capability(device)
    if hasattr(torch.nn.functional, "grouped_mm") or _torch_release() >= (2, 9, 0):
        return "native" if capability >= (8, 0) else "fallback"
    return "native" if capability[0] == 9 else "fallback"
def _native_grouped_mm(input: torch.Tensor, weight: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    if hasattr(torch.nn.functional, "grouped_mm"):
        return torch.nn.functional.grouped_mm(input, weight, offs=offs)
    return torch._grouped_mm(input, weight, offs=offs)
def grouped_mm(input: torch.Tensor, weight: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    input = input.to(weight.dtype)
    if choose_grouped_mm_path(input, weight) == "native":
        return _native_grouped_mm(input, weight, offs)
    return torch.ops.harness_ref.grouped_mm_fallback(input, weight, offs)
def _grouped_linear(
    x: torch.Tensor, weight: torch.Tensor, offs: torch.Tensor, bias: torch.Tensor | None, is_transposed: bool
) -> torch.Tensor:
    out = grouped_mm(x, weight if is_transposed else weight.transpose(-2, -1), offs)
    return out if bias is None else out + bias
def _activate(module, proj: torch.Tensor) -> torch.Tensor:
    apply_gate = getattr(module, "_apply_gate", None)
    if apply_gate is not None:
        return apply_gate(proj)
    gate, up = proj.chunk(2, dim=-1)
    return module.act_fn(gate) * up
def _post_norm(module, out: torch.Tensor) -> torch.Tensor:
    return out
def grouped_mm_experts_forward(module, hidden_states, top_k_index, top_k_weights):
    num_tokens, num_top_k = top_k_index.shape
    weights = _slot_weights(module, top_k_index, top_k_weights).reshape(-1)  # [S]
    expert_ids = top_k_index.reshape(-1)  # [S]
    sorted_ids, perm = torch.sort(expert_ids, stable=True)
    x = hidden_states[perm // num_top_k]  # pair s belongs to token s // K
    experts = torch.arange(module.num_experts, device=sorted_ids.device, dtype=sorted_ids.dtype)
    offs = torch.searchsorted(sorted_ids, experts, right=True, out_int32=True)
    up_weight, up_bias = _up_params(module)
    down_weight, down_bias = _down_params(module)
    proj = _grouped_linear(x, up_weight, offs, None, False)
    out = _grouped_linear(_activate(module, proj), down_weight, offs, None, False)
    out = _post_norm(module, out) * weights[perm].unsqueeze(-1)
    out = torch.zeros_like(out).index_copy(0, perm, out)
    return out.view(num_tokens, num_top_k, -1).sum(dim=1).to(hidden_states.dtype)

# backends/experts.py, backends/oracle.py, harness/measure/cell_run.py, harness/measure/steps.py: what the harness
# runs around it
class Experts(nn.Module):
    def __init__(self, num_experts: int, hidden_dim: int, intermediate_dim: int, *, act_fn: nn.Module | None=None, experts_implementation='eager', dtype: torch.dtype | None=None, device: torch.device | str | None=None):
        super().__init__()
        self.num_experts = num_experts
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.act_fn = act_fn if act_fn is not None else nn.SiLU()
        factory = {"dtype": dtype, "device": device}
        self.register_parameter('gate_up_proj', nn.Parameter(torch.empty((num_experts, 2 * intermediate_dim, hidden_dim), **factory)))
        self.down_proj = nn.Parameter(torch.empty((num_experts, hidden_dim, intermediate_dim), **factory))
    def _apply_gate(self, gate_up_out: torch.Tensor) -> torch.Tensor:
        gate, up = gate_up_out.chunk(2, dim=-1)
        return self.act_fn(gate) * up
def _init_weights(module: Experts, seed: int) -> None:
    E, H, I = module.num_experts, module.hidden_dim, module.intermediate_dim
    gen = torch.Generator().manual_seed(seed)
    gate = torch.randn(E, I, H, generator=gen) / H**0.5
    up = torch.randn(E, I, H, generator=gen) / H**0.5
    down = torch.randn(E, H, I, generator=gen) / I**0.5
    with torch.no_grad():
        module.gate_up_proj.copy_(torch.cat([gate, up], dim=1))
        module.down_proj.copy_(down)
def make_experts(num_experts: int, hidden: int, intermediate: int, *, dtype: torch.dtype=torch.float32, device: torch.device | str='cpu', seed: int=0, experts_implementation='eager') -> Experts:
    module = Experts(num_experts, hidden, intermediate, experts_implementation=experts_implementation, dtype=dtype, device=device)
    _init_weights(module, seed)
    return module
def compile_forward(subject):
    def forward(hidden_states, top_k_index, top_k_weights):
        return subject.fn(subject.module, hidden_states, top_k_index, top_k_weights)
    return torch.compile(forward, mode='reduce-overhead', fullgraph=True)
def fresh_inputs(subject, tokens: int, device, dtype, call: int):
    gen = torch.Generator().manual_seed(52953 * 1000 + call)
    hidden = torch.randn(tokens, 64, generator=gen)
    scores = torch.rand(tokens, 8, generator=gen)
    top_k_index = scores.topk(2, dim=-1).indices
    top_k_weights = torch.softmax(torch.randn(tokens, 2, generator=gen), dim=-1)
    return hidden.to(device, dtype), top_k_index.to(device), top_k_weights.to(device, dtype)
def compare(out, ref, tokens: int, hidden: int, dtype):
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
def oracle_forward(module, hidden_states, top_k_index, top_k_weights) -> torch.Tensor:
    device = hidden_states.device
    num_tokens, num_top_k = top_k_index.shape
    w1 = module.gate_up_proj.detach().to(device=device, dtype=torch.float64)
    w2 = module.down_proj.detach().to(device=device, dtype=torch.float64)
    x = hidden_states.detach().to(torch.float64)
    routing = top_k_weights.detach().to(torch.float64).tolist()
    experts = top_k_index.tolist()  # one host copy instead of a sync per (token, slot)
    out = torch.zeros(num_tokens, x.shape[1], dtype=torch.float64, device=device)
    for t in range(num_tokens):
        for k in range(num_top_k):
            e = experts[t][k]
            weight = routing[t][k]
            h = w1[e] @ x[t]
            gate, up = h.chunk(2)
            h = module.act_fn(gate) * up
            y = w2[e] @ h
            out[t] += weight * y
    return out
class Mismatch(AssertionError):
    pass
def _call_all(subject, compiled, device, dtype, calls):
    for call, tokens in enumerate([1, 4, 1]):
        args = fresh_inputs(subject, tokens, device, dtype, call)
        with timed_call(calls, tokens, device) as record:
            out = compiled(*args)  # a compile or runtime failure raises here
        problem, rel = compare(out, oracle_forward(subject.module, *args), tokens, 64, dtype)
        record["rel_error"] = rel
        if problem or rel > 0.005:
            raise Mismatch(f'call {call} ({tokens} tokens): ' + (problem or f'max relative error {rel:.3g} > tolerance 0.005'))

@contextlib.contextmanager
def timed_call(calls, tokens, device):  # stand-in for the harness's: the record, no timing
    calls.append({"tokens": tokens})
    yield calls[-1]
def main():
    print(f"Python {platform.python_version()}, {platform.platform()}, torch {torch.__version__}, GPU: "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}\nexpected: pass (each call's output within 0.005 (max relative error) of the float64 oracle)", flush=True)
    device, dtype = (torch.device('cuda'), torch.float16)
    torch.manual_seed(52953)
    module = make_experts(8, 64, 32, dtype=dtype, device=device, seed=52953)
    subject = types.SimpleNamespace(module=module, fn=grouped_mm_experts_forward, dense_routing=False)  # as harness/sources/load.py
    compiled, calls = (compile_forward(subject), [])
    torch._logging.set_logs(recompiles=True, graph_breaks=True)  # torch prints each one, with its reason
    try:
        with torch.no_grad():  # as generate() runs
            _call_all(subject, compiled, device, dtype, calls)
    finally:
        for call, record in enumerate(calls):  # the records _call_all kept
            print(f"call {call} ({record['tokens']} tokens):", "failed" if record.get("rel_error") is None else
                  f"max relative error {record['rel_error']:.3g}")
    print("observed: pass (did not reproduce: every call passed; recompiles and graph breaks, if any, are logged above)")
CELL = {'source': 'reference', 'backend': 'grouped_mm', 'mode': 'reduce-overhead', 'dtype': 'float16', 'fullgraph': True, 'device': 'cuda', 'shape': 'decode', 'layout': 'default', 'scope': 'kernel', 'phase': 'inference'}
if __name__ == "__main__":
    try:
        main()
    except Exception as exc:
        what = f'{type(exc).__module__}.{type(exc).__qualname__}'.removeprefix('builtins.').removeprefix('__main__.')
        print(f'observed: {what}: {str(exc).strip().splitlines()[0]}', flush=True)
        raise
