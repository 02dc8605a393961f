"""Compile-matrix cell reference-eager-default-bfloat16-fullgraph-cpu-decode, from `python -m harness repro`.
Observed by the harness (torch 2.13.0, transformers 5.24.0, cpu): compile_error: torch._dynamo.exc.UserError:
GuardOnDataDependentSymNode: Could not extract specialized integer from data-dependent expression u0 (unhinte...
Run `python THIS_FILE` (torch only): exit 1 and the traceback if the failure reproduces, 0 if all passes.
"""

import contextlib
import platform
import types

import torch
from torch import nn
from torch.nn import functional as F

# backends/reference.py: the code under test
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
def _activate(module, proj: torch.Tensor) -> torch.Tensor:
    apply_gate = getattr(module, "_apply_gate", None)
    if apply_gate is not None:
        return apply_gate(proj)
    gate, up = proj.chunk(2, dim=-1)
    return module.act_fn(gate) * up
def eager_experts_forward(module, hidden_states, top_k_index, top_k_weights):
    weights = _slot_weights(module, top_k_index, top_k_weights)
    up_weight, up_bias = _up_params(module)
    down_weight, down_bias = _down_params(module)
    final = torch.zeros_like(hidden_states)
    with torch.no_grad():
        expert_mask = F.one_hot(top_k_index, num_classes=module.num_experts).permute(2, 1, 0)
        expert_hit = torch.greater(expert_mask.sum(dim=(-1, -2)), 0).nonzero()
    for hit in expert_hit:
        expert = hit[0]
        slot, token = torch.where(expert_mask[expert])
        x = hidden_states[token]
        proj = F.linear(x, up_weight[expert])
        out = _activate(module, proj)
        out = F.linear(out, down_weight[expert])
        final.index_add_(0, token, (out * weights[token, slot, None]).to(final.dtype))
    return final

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
    return torch.compile(forward, mode=None, fullgraph=True)
def fresh_inputs(subject, tokens: int, device, dtype, call: int):
    gen = torch.Generator().manual_seed(9975 * 1000 + call)
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
        if problem or rel > 0.03:
            raise Mismatch(f'call {call} ({tokens} tokens): ' + (problem or f'max relative error {rel:.3g} > tolerance 0.03'))

@contextlib.contextmanager
def timed_call(calls, tokens, device):  # stand-in for the harness's: the record, no timing
    calls.append({"tokens": tokens})
    yield calls[-1]
def main():
    print(f"Python {platform.python_version()}, {platform.platform()}, torch {torch.__version__}, GPU: "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}\nexpected: pass (each call's output within 0.03 (max relative error) of the float64 oracle)", flush=True)
    device, dtype = (torch.device('cpu'), torch.bfloat16)
    torch.manual_seed(9975)
    module = make_experts(8, 64, 32, dtype=dtype, device=device, seed=9975)
    subject = types.SimpleNamespace(module=module, fn=eager_experts_forward, dense_routing=False)  # as harness/sources/load.py
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
CELL = {'source': 'reference', 'backend': 'eager', 'mode': 'default', 'dtype': 'bfloat16', 'fullgraph': True, 'device': 'cpu', 'shape': 'decode', 'layout': 'default', 'scope': 'kernel', 'phase': 'inference'}
if __name__ == "__main__":
    try:
        main()
    except Exception as exc:
        what = f'{type(exc).__module__}.{type(exc).__qualname__}'.removeprefix('builtins.').removeprefix('__main__.')
        print(f'observed: {what}: {str(exc).strip().splitlines()[0]}', flush=True)
        raise
