"""Standalone reproduction of compile-matrix cell transformers-tf_grouped_mm_train-default-float32-fullgraph-cpu-decode-training.

Observed: compile_error: torch._dynamo.exc.BackendCompilerFailed: backend='inductor' raised: GuardOnDataDependentSymNode: Could not guard on data-dependent expression Eq(u0, 0) (unhinted: Eq(u0, 0)).  (Size-like symbols: none)
      on: torch 2.13.0, transformers 5.17.0, cpu
Backend: harness.source_transformers:grouped_mm (transformers); mode=default, dtype=float32, fullgraph=True, device=cpu, shape=decode {'tokens': [1, 4, 1], 'hidden': 64, 'intermediate': 32, 'experts': 8, 'top_k': 2, 'routing': 'uniform'}, layout=default, scope=kernel, phase=training.
Harness command: python -m harness run --matrix matrix.yaml --cell transformers-tf_grouped_mm_train-default-float32-fullgraph-cpu-decode-training [--transformers-src PATH]

Needs only torch and transformers; run it as `python THIS_FILE`. To test a transformers checkout,
run `PYTHONPATH=CHECKOUT/src python THIS_FILE`: the first line printed names the versions and the
transformers folder imported.
Exit status: 1 (with the traceback) when the failure reproduces, 0 when every call passes.
"""
from __future__ import annotations

import copy
import os
import re
import sys
import types

import torch
import transformers
from torch.profiler import ProfilerActivity, profile

# ---- inlined from harness/tf_families.py: transformers model families per layout --------------------------------------
import importlib
from dataclasses import dataclass
from typing import Any, Callable

VOCAB = 128
LAYERS = 2


@dataclass(frozen=True)
class Family:
    """One weight layout as transformers ships it: where its classes live and how to make a tiny config."""

    layout: str
    model_type: str  # transformers/models/<model_type>
    experts_class: str
    causal_lm_class: str
    config_class: str
    config_kwargs: Callable[[int, int, int, int], dict[str, Any]]  # (hidden, intermediate, experts, top_k)
    dense_routing: bool = False  # kernel cells feed [T, E] router scores instead of [T, K]

    def config(self, hidden: int, intermediate: int, experts: int, top_k: int):
        """A tiny random config of this family."""
        module = importlib.import_module("transformers")
        return getattr(module, self.config_class)(**self.config_kwargs(hidden, intermediate, experts, top_k))

    def cls(self, name: str):
        """A class of this family's modeling module (e.g. its experts class)."""
        module = importlib.import_module(f"transformers.models.{self.model_type}.modeling_{self.model_type}")
        return getattr(module, name)


def _heads(hidden: int) -> dict[str, int]:
    # 4 query heads, 2 kv heads; head_dim from hidden so any shape of matrix.yaml works.
    return {"num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": max(8, hidden // 4)}


def _qwen2_moe(hidden, intermediate, experts, top_k):
    return {"vocab_size": VOCAB, "hidden_size": hidden, "intermediate_size": 2 * intermediate,
            "moe_intermediate_size": intermediate, "shared_expert_intermediate_size": intermediate,
            "num_experts": experts, "num_experts_per_tok": top_k, "num_hidden_layers": LAYERS,
            "max_position_embeddings": 256, "hidden_act": "silu", **_heads(hidden)}


def _gpt_oss(hidden, intermediate, experts, top_k):
    return {"vocab_size": VOCAB, "hidden_size": hidden, "intermediate_size": intermediate,
            "num_local_experts": experts, "num_experts_per_tok": top_k, "num_hidden_layers": LAYERS,
            "layer_types": ["sliding_attention", "full_attention"][:LAYERS], "sliding_window": 16,
            # Plain RoPE: the YaRN default is sized for 128k contexts and warns at this size.
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
            "max_position_embeddings": 256, **_heads(hidden)}


def _nemotron_h(hidden, intermediate, experts, top_k):
    # Attention + MoE blocks only: the Mamba blocks are not what is under test and need kernels on GPU.
    return {"vocab_size": VOCAB, "hidden_size": hidden, "intermediate_size": 2 * intermediate,
            "moe_intermediate_size": intermediate, "moe_shared_expert_intermediate_size": intermediate,
            "n_routed_experts": experts, "num_experts_per_tok": top_k, "layers_block_type": ["attention", "moe"],
            "n_group": 1, "topk_group": 1, "max_position_embeddings": 256, "use_mamba_kernels": False,
            **_heads(hidden)}


def _deepseek_v2(hidden, intermediate, experts, top_k):
    # MLA attention at tiny ranks; every layer sparse (first_k_dense_replace=0).
    return {"vocab_size": VOCAB, "hidden_size": hidden, "intermediate_size": 2 * intermediate,
            "moe_intermediate_size": intermediate, "n_routed_experts": experts, "num_experts_per_tok": top_k,
            "n_shared_experts": 1, "num_hidden_layers": LAYERS, "num_attention_heads": 4, "num_key_value_heads": 4,
            "kv_lora_rank": 16, "q_lora_rank": None, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8,
            "v_head_dim": 8, "first_k_dense_replace": 0, "max_position_embeddings": 256}


FAMILIES = {
    "default": Family("default", "qwen2_moe", "Qwen2MoeExperts", "Qwen2MoeForCausalLM", "Qwen2MoeConfig", _qwen2_moe),
    "gpt_oss": Family("gpt_oss", "gpt_oss", "GptOssExperts", "GptOssForCausalLM", "GptOssConfig", _gpt_oss),
    "non_gated": Family("non_gated", "nemotron_h", "NemotronHExperts", "NemotronHForCausalLM", "NemotronHConfig",
                        _nemotron_h),
    # DeepSeek-V2 experts fed [T, E] router scores (older DeepSeek-style callers); the model gathers [T, K].
    "deepseek_v2": Family("deepseek_v2", "deepseek_v2", "DeepseekV2Experts", "DeepseekV2ForCausalLM",
                          "DeepseekV2Config", _deepseek_v2, dense_routing=True),
}


def family(layout: str) -> Family:
    """The transformers family of a layout; ValueError naming the layouts that have one."""
    try:
        return FAMILIES[layout]
    except KeyError:
        raise ValueError(f"layout {layout!r} has no transformers family; transformers backends run on "
                         f"{', '.join(FAMILIES)} (limit them with `only: {{layout: [...]}}`)") from None

# ---- inlined from harness/source_transformers.py: the experts module and its seeded weights ---------------------------
def build_experts(spec: dict[str, Any], key: str, device, dtype):
    """(module, family): the family's experts class from its tiny config, seeded weights, `key` configured."""
    cell, shape = spec["cell"], spec["shape"]
    fam = family(cell["layout"])
    config = fam.config(shape["hidden"], shape["intermediate"], shape["experts"], shape["top_k"])
    config._experts_implementation = key  # read by the class's forward at every call: the dispatch
    module = fam.cls(fam.experts_class)(config)
    init_experts(module, spec["seed"])
    module.to(device=device, dtype=dtype)
    return module, fam


def init_experts(module, seed: int) -> None:
    """Seeded N(0, 1/fan_in) expert weights (O(1) outputs), O(0.1-0.5) biases; layout-independent."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(module.named_parameters()):
            if name.endswith("_bias"):
                std = 0.5 if name.startswith(("gate_up", "up")) else 0.1
            else:
                # Weights are [E, out, in], or [E, in, out] in the transposed layout (GPT-OSS).
                std = int(param.shape[1] if getattr(module, "is_transposed", False) else param.shape[2]) ** -0.5
            param.copy_(torch.randn(param.shape, generator=gen) * std)


# ---- inlined from harness/tf_dispatch.py: which experts function the experts module called ----------------------------
import contextlib
from typing import Any, Iterator


class MisDispatch(RuntimeError):
    """The experts backend that ran is not the one the cell names."""


class DispatchLog:
    """What one spied call did: per experts module (by name), the interface functions its forward called."""

    def __init__(self):
        self.modules: list[str] = []  # experts modules called, in call order
        self.interface: dict[str, list[str]] = {}  # module name -> interface keys its forward called

    def ran(self) -> dict[str, str]:
        """module name -> the implementation that ran: the interface key called, or 'eager' if none was."""
        result = {}
        for name in self.modules:
            keys = self.interface.get(name, [])
            result[name] = "+".join(sorted(set(keys))) if keys else "eager"
        return result


@contextlib.contextmanager
def spy(experts_modules: dict[str, Any]) -> Iterator[DispatchLog]:
    """Record which ExpertsInterface function each experts module's forward calls inside the block."""
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    log = DispatchLog()
    names = {id(module): name for name, module in experts_modules.items()}
    stack: list[str] = []

    def _pre_hook(module, args):
        name = names[id(module)]
        log.modules.append(name)
        stack.append(name)

    def _post_hook(module, args, output):
        if stack:
            stack.pop()

    handles = []
    for module in experts_modules.values():
        handles.append(module.register_forward_pre_hook(_pre_hook))
        handles.append(module.register_forward_hook(_post_hook))
    saved = []
    try:
        for mapping in (ALL_EXPERTS_FUNCTIONS._global_mapping, ALL_EXPERTS_FUNCTIONS._local_mapping):
            for key, fn in list(mapping.items()):
                saved.append((mapping, key, fn))
                mapping[key] = _recording(key, fn, log, stack)
        yield log
    finally:
        for mapping, key, fn in reversed(saved):
            mapping[key] = fn
        for handle in handles:
            handle.remove()


def _recording(key: str, fn, log: DispatchLog, stack: list[str]):
    """`fn` that first notes, for the experts module being called, that interface key `key` ran."""

    def _wrapper(*args, **kwargs):
        owner = stack[-1] if stack else "(no experts module)"
        log.interface.setdefault(owner, []).append(key)
        return fn(*args, **kwargs)

    _wrapper.__wrapped__ = fn
    return _wrapper


def check(log: DispatchLog, expected: dict[str, str], where: str) -> None:
    """Raise MisDispatch unless every expected module ran and ran the expected implementation."""
    ran = log.ran()
    wrong = {name: (want, ran.get(name, "not called")) for name, want in expected.items() if ran.get(name) != want}
    if wrong:
        detail = "; ".join(f"{name}: expected {want}, ran {got}" for name, (want, got) in sorted(wrong.items())[:4])
        raise MisDispatch(f"{where}: {detail}" + (f" (+{len(wrong) - 4} more)" if len(wrong) > 4 else ""))


def experts_modules(model: Any) -> dict[str, Any]:
    """Every module of `model` that dispatches through transformers' experts interface, by qualified name."""
    found = {}
    for name, module in model.named_modules():
        forward = type(module).__dict__.get("forward")
        # use_experts_implementation wraps forward (functools.wraps) and sets these flags in __init__.
        if forward is not None and hasattr(forward, "__wrapped__") and hasattr(module, "has_gate") \
                and hasattr(module, "is_transposed"):
            found[name or type(module).__name__] = module
    return found

tf_dispatch = types.SimpleNamespace(spy=spy, check=check, MisDispatch=MisDispatch, experts_modules=experts_modules)


# ---- inlined from harness/source_transformers.py: the dispatch proof --------------------------------------------------
def probe_dispatch(spec: dict[str, Any], module, fam, key: str, device, dtype) -> None:
    """The first dispatch proof: raise MisDispatch unless an uncompiled probe call reaches implementation `key`."""
    name = type(module).__name__
    with tf_dispatch.spy({name: module}) as log:
        try:
            _probe(module, spec["shape"], fam.dense_routing, device, dtype, spec["seed"])
        except Exception:  # noqa: BLE001 - only the dispatch matters here; the cell's calls report errors
            pass
    tf_dispatch.check(log, {name: key}, "uncompiled probe call")


def _probe(module, shape: dict[str, Any], dense: bool, device, dtype, seed: int) -> None:
    """One small uncompiled call with valid inputs, to see where the experts forward dispatches."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    tokens, experts, top_k = 3, shape["experts"], shape["top_k"]
    hidden = torch.randn(tokens, shape["hidden"], generator=gen)
    index = torch.rand(tokens, experts, generator=gen).topk(top_k, dim=-1).indices
    weights = torch.softmax(torch.randn(tokens, top_k, generator=gen), dim=-1)
    if dense:
        weights = torch.zeros(tokens, experts).scatter(1, index, weights)
    with torch.no_grad():
        module(hidden.to(device, dtype), index.to(device), weights.to(device, dtype))


# ---- inlined from harness/cell_run.py: the profiler evidence check ----------------------------------------------------
def dispatch_proof(subject, ops: list[str]) -> tuple[str, dict[str, Any] | None]:
    """("pass", None), or a MisDispatch runtime_error when the profiled ops show another backend ran."""
    missing = [op for op in subject.expected_ops if not any(op in name for name in ops)]
    foreign = [op for op in subject.forbidden_ops if any(op in name for name in ops)]
    if missing or foreign:  # the backend the cell names did not run (or not alone)
        what = (f"expected ops {missing} not seen" if missing else "") + ("; " if missing and foreign else "") \
            + (f"ops of another backend {foreign} seen" if foreign else "")
        return "runtime_error", {"type": "MisDispatch", "phase": "profile", "message": f"{what}; ran {ops}"}
    return "pass", None


class Experts:
    """Stand-in for backends/experts.py's Experts, which the oracle names: transformers cells do not build one."""

    def _apply_gate(self, gate_up_out):
        raise NotImplementedError


# The backend under test: transformers' experts forward dispatches on this key ('eager': the class's own forward).
EXPERTS_IMPLEMENTATION = 'grouped_mm'
# Profiler evidence that the backend ran, as the harness checks it: (ops that must appear, ops of another backend).
EVIDENCE = (('grouped_mm',), ('bmm',))
INTERESTING_OP = re.compile('grouped_mm|bmm|::mm$|::addmm$|fallback|cudaGraphLaunch')  # the op names the harness keeps


def versions() -> str:
    """The versions a bug report needs, and which transformers was imported (a checkout on PYTHONPATH?)."""
    return (f"torch {torch.__version__}, transformers {transformers.__version__} "
            f"({os.path.dirname(transformers.__file__)})")


def dispatch_evidence(call, device):
    """(ops, error or None): the op names the harness keeps from one call under the profiler, against EVIDENCE."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        call()
        _sync(device)
    ops = sorted({event.name for event in prof.events() if INTERESTING_OP.search(event.name)})
    return ops, dispatch_proof(types.SimpleNamespace(expected_ops=EVIDENCE[0], forbidden_ops=EVIDENCE[1]), ops)[1]


def build_subject(device, dtype):
    """transformers' experts module of the cell's family, configured for the backend; MisDispatch unless an
    uncompiled probe call reaches that backend (the harness's first dispatch proof)."""
    module, fam = build_experts(SPEC, EXPERTS_IMPLEMENTATION, device, dtype)
    probe_dispatch(SPEC, module, fam, EXPERTS_IMPLEMENTATION, device, dtype)
    return types.SimpleNamespace(module=module, dense_routing=fam.dense_routing)


def check_evidence(compiled, args, device) -> None:
    """The harness's second dispatch proof: the ops one more call runs, under the profiler."""
    ops, error = dispatch_evidence(lambda: compiled(*args), device)
    if error:
        raise MisDispatch(f"profiled call: {error['message']}")
    print(f"profiled call: ops {ops}")

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


# ---- inlined from harness/training.py: forward + backward, the oracle's gradients, their comparison -------------------
def _step(spec, subject, compiled, device, dtype, call: int):
    """Forward + backward of the (compiled) backend; returns (output, {tensor name: grad}, the inputs)."""
    import torch

    hidden, index, weights = _inputs(spec, subject, spec["shape"]["tokens"][call], device, dtype, call)
    hidden.requires_grad_(True)
    weights.requires_grad_(True)
    subject.module.zero_grad(set_to_none=True)
    out = compiled(hidden, index, weights)
    (out.float() * _cotangent(spec, out.shape[0], call).to(out.device)).sum().backward()
    _sync(device)
    grads = {"hidden_states": hidden.grad, "routing_weights": weights.grad}
    grads.update({name: param.grad for name, param in subject.module.named_parameters()})
    return out.detach(), grads, (hidden.detach(), index, weights.detach())


def _oracle_step(spec, reference, args, call: int):
    """The oracle's float64 output and autograd gradients for the same inputs and cotangent."""
    import torch

    hidden, index, weights = args
    hidden64 = hidden.to(torch.float64).requires_grad_(True)
    weights64 = weights.to(torch.float64).requires_grad_(True)
    reference.zero_grad(set_to_none=True)
    out = oracle_forward(reference, hidden64, index, weights64, differentiable=True)
    (out * _cotangent(spec, out.shape[0], call).to(out.device, torch.float64)).sum().backward()
    grads = {"hidden_states": hidden64.grad, "routing_weights": weights64.grad}
    grads.update({name: param.grad for name, param in reference.named_parameters()})
    return out.detach(), grads


def _cotangent(spec, tokens: int, call: int):
    """A fixed random dL/d(output) per cell and call (float32, CPU); never zero, so every gradient matters."""
    import torch

    gen = torch.Generator().manual_seed(spec["seed"] * 1000 + 500 + call)
    return torch.randn(tokens, spec["shape"]["hidden"], generator=gen)


def _compare_grads(grads: dict[str, Any], ref_grads: dict[str, Any]) -> tuple[str | None, dict[str, float]]:
    """(problem, {name: relative error}) for every gradient the oracle has; a missing or non-finite one is a problem."""
    import torch

    errors: dict[str, float] = {}
    for name, ref in ref_grads.items():
        if ref is None:
            continue
        got = grads.get(name)
        if got is None:
            if ref.abs().max().item() == 0.0:
                continue  # nothing flows there in the oracle either (e.g. a never-selected expert's bias)
            return f"no gradient for {name} (the oracle's is nonzero)", errors
        got64 = got.detach().to("cpu", torch.float64)
        ref64 = ref.detach().to("cpu", torch.float64)
        if got64.shape != ref64.shape:
            return f"gradient of {name} has shape {tuple(got64.shape)}, expected {tuple(ref64.shape)}", errors
        if not torch.isfinite(got64).all():
            return f"gradient of {name} has NaN or Inf", errors
        scale = ref64.abs().max().item() or 1.0
        errors[name] = (got64 - ref64).abs().max().item() / scale
    return None, errors


SPEC = {'cell': {'source': 'transformers',
          'backend': 'tf_grouped_mm_train',
          'mode': 'default',
          'dtype': 'float32',
          'fullgraph': True,
          'device': 'cpu',
          'shape': 'decode',
          'layout': 'default',
          'scope': 'kernel',
          'phase': 'training'},
 'impl': 'harness.source_transformers:grouped_mm',
 'shape': {'tokens': [1, 4, 1],
           'hidden': 64,
           'intermediate': 32,
           'experts': 8,
           'top_k': 2,
           'routing': 'uniform'},
 'tolerance': 0.0001,
 'max_recompiles': 1,
 'seed': 70575}


def main() -> int:
    """Build the cell's module, compile the backend as the cell does, train-step it once per token count."""
    cell, shape = SPEC["cell"], SPEC["shape"]
    device, dtype = torch.device(cell["device"]), getattr(torch, cell["dtype"])
    tolerance = SPEC["tolerance"]
    print(f"{versions()}, device {device}, cell {cell}")
    torch.manual_seed(SPEC["seed"])
    subject = build_subject(device, dtype)
    module = subject.module
    reference = copy.deepcopy(module).to(torch.float64)  # the oracle's float64 copy, made before compiling

    def forward(hidden_states, top_k_index, top_k_weights):
        return module(hidden_states, top_k_index, top_k_weights)  # dispatches on config._experts_implementation

    compiled = torch.compile(forward, mode=None, fullgraph=True)
    with torch.enable_grad():  # training cells: forward and backward
        for call, tokens in enumerate(shape["tokens"]):
            # A compile or runtime failure (forward or backward) raises here, with its traceback.
            out, grads, args = _step(SPEC, subject, compiled, device, dtype, call)
            ref_out, ref_grads = _oracle_step(SPEC, reference, args, call)
            problem, rel = _compare(out, ref_out, tokens, shape["hidden"], dtype)
            grad_problem, grad_errors = _compare_grads(grads, ref_grads)
            problem = problem or grad_problem
            if problem:
                raise AssertionError(f"call {call} ({tokens} tokens): {problem}")
            print(f"call {call} ({tokens} tokens): output max relative error {rel:.3g}, gradients max relative "
                  f"error {max(grad_errors.values(), default=0.0):.3g} (tolerance {tolerance:g})")
            for name, value in grad_errors.items():
                print(f"    gradient of {name}: {value:.3g}")
            over = {name: value for name, value in {"output": rel, **grad_errors}.items() if value > tolerance}
            if over:
                name, value = max(over.items(), key=lambda item: item[1])
                raise AssertionError(f"call {call} ({tokens} tokens): max relative error of {name} "
                                     f"{value:.3g} > tolerance {tolerance:g}")
    print("did not reproduce: every call passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
