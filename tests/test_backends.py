"""Tests for backends/: reference experts backends vs the float64 oracle, transformers, and torch.compile."""

import importlib
import sys
from pathlib import Path

import pytest
import torch
from torch.profiler import profile

try:
    import backends
except ImportError:  # plain `pytest` from elsewhere: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import backends

from backends import (
    FALLBACK_OP,
    LAYOUTS,
    REFERENCE_BACKENDS,
    choose_grouped_mm_path,
    grouped_mm,
    make_experts,
    native_grouped_mm_available,
    oracle_forward,
)

H, I, K = 32, 16, 2
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# (num_tokens, num_experts, skewed): skewed routing leaves the last expert without any token.
CASES = {"T9_E6": (9, 6, False), "T1_E4": (1, 4, False), "skewed_T16_E8": (16, 8, True)}
ROUTINGS = ("TK", "TE")  # routing weights as [T, K] or as full [T, E] router scores


def _routing(num_tokens, num_experts, *, skewed=False, seed=0):
    """Return (top_k_index [T,K] int64, weights [T,K], scores [T,E]) with scores.gather(1, index) == weights."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_tokens, num_experts, generator=gen)
    if skewed:
        logits[:, 0] += 3.0  # most pairs on expert 0
        logits[:, -1] = float("-inf")  # last expert gets nothing (probability 0, never in the top-k)
    scores = logits.softmax(dim=-1)
    weights, index = scores.topk(K, dim=-1)
    return index, weights, scores


def _inputs(case, dtype, layout="default", seed=0):
    """Build (module, hidden_states, top_k_index, weights [T,K], scores [T,E]) for a CASES entry."""
    num_tokens, num_experts, skewed = CASES[case]
    module = make_experts(num_experts, H, I, layout=layout, dtype=dtype, seed=seed)
    hidden = torch.randn(num_tokens, H, generator=torch.Generator().manual_seed(seed + 1)).to(dtype)
    index, weights, scores = _routing(num_tokens, num_experts, skewed=skewed, seed=seed + 2)
    if skewed:
        assert not (index == num_experts - 1).any()
    return module, hidden, index, weights.to(dtype), scores.to(dtype)


def _rel_err(y, ref):
    """max |y - ref| / max |ref|, computed in float64."""
    return ((y.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def _profiled_names(fn, *args):
    """Run fn(*args) under the profiler; return (result, set of event names)."""
    with profile() as prof:
        result = fn(*args)
    return result, {event.name for event in prof.events()}


@pytest.fixture
def fresh_dynamo():
    """Reset dynamo so every compile test compiles anew (and never hits the recompile limit)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


# --- correctness against the float64 oracle --------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("routing", ROUTINGS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("backend", list(REFERENCE_BACKENDS))
def test_backend_matches_oracle(backend, layout, routing, dtype, case):
    module, hidden, index, weights, scores = _inputs(case, dtype, layout)
    routing_weights = weights if routing == "TK" else scores
    ref = oracle_forward(module, hidden, index, routing_weights)
    y = REFERENCE_BACKENDS[backend](module, hidden, index, routing_weights)
    assert y.shape == hidden.shape and y.dtype == hidden.dtype
    assert ref.abs().max() > 0.1  # O(1) outputs, never trivially zero
    assert _rel_err(y, ref) <= TOLERANCE[dtype]


@pytest.mark.parametrize("backend", list(REFERENCE_BACKENDS))
def test_bf16_hidden_with_fp32_routing_weights(backend):
    module, hidden, index, weights, _ = _inputs("T9_E6", torch.bfloat16)
    y = REFERENCE_BACKENDS[backend](module, hidden, index, weights.float())
    assert y.dtype == torch.bfloat16
    assert _rel_err(y, oracle_forward(module, hidden, index, weights.float())) <= TOLERANCE[torch.bfloat16]


@pytest.mark.parametrize("backend", [*REFERENCE_BACKENDS, "oracle"])
def test_bad_routing_weights_shape_raises(backend):
    module, hidden, index, _, _ = _inputs("T9_E6", torch.float32)
    fn = oracle_forward if backend == "oracle" else REFERENCE_BACKENDS[backend]
    with pytest.raises(ValueError):
        fn(module, hidden, index, torch.ones(hidden.shape[0], 5))


@pytest.mark.parametrize(
    "group", [("default", "transposed", "interleaved"), ("bias", "transposed_bias", "gpt_oss")], ids=["plain", "bias"]
)
def test_same_seed_same_function_across_layouts(group):
    # make_experts packs the same logical weights into every layout, so layouts must agree.
    outputs = []
    for layout in group:
        module, hidden, index, weights, _ = _inputs("T9_E6", torch.float32, layout)
        outputs.append(oracle_forward(module, hidden, index, weights))
    for out in outputs[1:]:
        torch.testing.assert_close(out, outputs[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_make_experts_layout(layout):
    module = make_experts(6, H, I, layout=layout, dtype=torch.bfloat16, seed=3)
    params = dict(module.named_parameters())
    up = "gate_up_proj" if module.has_gate else "up_proj"
    up_dim = 2 * I if module.has_gate else I
    expected = {
        up: (6, H, up_dim) if module.is_transposed else (6, up_dim, H),
        "down_proj": (6, I, H) if module.is_transposed else (6, H, I),
    }
    if module.has_bias:
        expected.update({f"{up}_bias": (6, up_dim), "down_proj_bias": (6, H)})
    assert {name: tuple(p.shape) for name, p in params.items()} == expected
    assert all(p.dtype == torch.bfloat16 and p.abs().max() > 0 for p in params.values())


@pytest.mark.parametrize("backend", list(REFERENCE_BACKENDS))
def test_module_forward_dispatches(backend, monkeypatch):
    # The backends agree within tolerance, so equal outputs prove nothing about dispatch: spy on every backend
    # (as transformers' tests wrap ALL_EXPERTS_FUNCTIONS) and require that exactly the named one ran.
    module, hidden, index, weights, _ = _inputs("T9_E6", torch.float32, "gpt_oss")
    ran = []
    for name, fn in list(REFERENCE_BACKENDS.items()):
        monkeypatch.setitem(REFERENCE_BACKENDS, name, lambda *args, _name=name, _fn=fn: ran.append(_name) or _fn(*args))
    module.experts_implementation = backend
    out = module(hidden, index, weights)
    assert ran == [backend]
    torch.testing.assert_close(out, REFERENCE_BACKENDS[backend](module, hidden, index, weights))


def test_dotted_paths_import():
    for name in ("eager_experts_forward", "batched_mm_experts_forward", "grouped_mm_experts_forward"):
        module_path, attr = f"backends.reference:{name}".split(":")
        assert getattr(importlib.import_module(module_path), attr) is REFERENCE_BACKENDS[name.split("_experts")[0]]


# --- agreement with transformers ---------------------------------------------------------------------

try:
    from transformers.integrations import moe as transformers_moe
except ImportError:  # the rest of this file needs no transformers
    transformers_moe = None
needs_transformers = pytest.mark.skipif(transformers_moe is None, reason="transformers is not installed")


@needs_transformers
@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("backend", ["batched_mm", "grouped_mm"])
def test_matches_transformers_on_our_module(backend, layout, dtype):
    # transformers 5.x only accepts [T, K] routing weights (it reshapes them to [T*K]).
    module, hidden, index, weights, _ = _inputs("skewed_T16_E8", dtype, layout)
    theirs = getattr(transformers_moe, f"{backend}_experts_forward")(module, hidden, index, weights)
    ours = REFERENCE_BACKENDS[backend](module, hidden, index, weights)
    assert _rel_err(ours, theirs) <= TOLERANCE[dtype]


def _transformers_experts(model):
    """Build a tiny transformers experts module (E=6) with random O(1)-scaled weights."""
    if model == "deepseek_v2":
        from transformers import DeepseekV2Config as Config
        from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2Experts as Cls

        config = Config(hidden_size=H, moe_intermediate_size=I, n_routed_experts=6, num_experts_per_tok=K)
    elif model == "gpt_oss":  # transposed, biased, interleaved, custom clamped-SwiGLU _apply_gate
        from transformers import GptOssConfig as Config
        from transformers.models.gpt_oss.modeling_gpt_oss import GptOssExperts as Cls

        config = Config(hidden_size=H, intermediate_size=I, num_local_experts=6, num_experts_per_tok=K)
    else:  # nemotron_h: non-gated up_proj with relu2
        from transformers import NemotronHConfig as Config
        from transformers.models.nemotron_h.modeling_nemotron_h import NemotronHExperts as Cls

        config = Config(hidden_size=H, moe_intermediate_size=I, n_routed_experts=6, num_experts_per_tok=K)
    config._experts_implementation = "eager"
    module = Cls(config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in module.parameters():
            scale = param.shape[-1] ** -0.5 if param.dim() == 3 else 0.2
            param.copy_(scale * torch.randn(param.shape, generator=gen))
    return module


@needs_transformers
@pytest.mark.parametrize("routing", ROUTINGS)
@pytest.mark.parametrize("backend", [*REFERENCE_BACKENDS, "module_eager"])
@pytest.mark.parametrize("model", ["deepseek_v2", "gpt_oss", "nemotron_h"])
def test_on_transformers_experts_modules(model, backend, routing):
    module = _transformers_experts(model)
    hidden = torch.randn(9, H, generator=torch.Generator().manual_seed(1))
    index, weights, scores = _routing(9, 6, seed=2)
    if backend == "module_eager":
        if routing == "TE":
            pytest.skip("transformers' own eager forward only takes [T, K] routing weights")
        y = module(hidden, index, weights)
    else:
        y = REFERENCE_BACKENDS[backend](module, hidden, index, weights if routing == "TK" else scores)
    assert _rel_err(y, oracle_forward(module, hidden, index, weights)) <= TOLERANCE[torch.float32]


# --- grouped-mm dispatcher and fallback custom op ------------------------------------------------------


def _grouped_operands(dtype=torch.float32, requires_grad=False):
    """Return (input [10,32], weight [4,32,16], offs) with an empty group (1) and rows split 3/0/5/2."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(10, 32, generator=gen).to(dtype).requires_grad_(requires_grad)
    w = torch.randn(4, 32, 16, generator=gen).to(dtype).requires_grad_(requires_grad)
    return x, w, torch.tensor([3, 3, 8, 10], dtype=torch.int32)


def test_fallback_opcheck():
    x, w, offs = _grouped_operands(requires_grad=True)
    torch.library.opcheck(torch.ops.harness_ref.grouped_mm_fallback.default, (x, w, offs))
    grad_out = torch.randn(10, 16)
    torch.library.opcheck(
        torch.ops.harness_ref.grouped_mm_fallback_backward.default, (x.detach(), w.detach(), offs, grad_out)
    )


def test_fallback_gradcheck():
    # Small operands: gradcheck perturbs every element. Groups of 2/0/3/1 rows, group 1 empty.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    offs = torch.tensor([2, 2, 5, 6], dtype=torch.int32)
    assert torch.autograd.gradcheck(lambda a, b: torch.ops.harness_ref.grouped_mm_fallback(a, b, offs), (x, w))


def test_fallback_values_and_tail_rows():
    x, w, _ = _grouped_operands()
    offs = torch.tensor([3, 3, 6, 8], dtype=torch.int32)  # rows 8, 9 belong to no group
    out = torch.ops.harness_ref.grouped_mm_fallback(x, w, offs)
    torch.testing.assert_close(out[:3], x[:3] @ w[0])
    torch.testing.assert_close(out[3:6], x[3:6] @ w[2])
    torch.testing.assert_close(out[6:8], x[6:8] @ w[3])
    assert (out[8:] == 0).all()


@pytest.mark.skipif(not native_grouped_mm_available(), reason="no native grouped_mm in this torch")
@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
def test_fallback_matches_native(dtype):
    x, w, offs = _grouped_operands(dtype)
    assert choose_grouped_mm_path(x, w) == "native"
    native = grouped_mm(x, w, offs)
    fallback = torch.ops.harness_ref.grouped_mm_fallback(x, w, offs)
    torch.testing.assert_close(native, fallback, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


def test_choose_path_falls_back_where_native_cannot_run():
    x, w, _ = _grouped_operands()
    assert choose_grouped_mm_path(x.double(), w.double()) == "fallback"  # kernel has no float64
    assert choose_grouped_mm_path(x[:, :30].contiguous(), w[:, :30]) == "fallback"  # x rows are 120 bytes
    assert choose_grouped_mm_path(x, w[:, :, :15].contiguous()) == "fallback"  # w rows are 60 bytes
    if native_grouped_mm_available():
        assert choose_grouped_mm_path(x, w[:, :, :15]) == "native"  # a view keeping 64-byte rows is fine
        assert choose_grouped_mm_path(x, w.transpose(1, 2).contiguous().transpose(1, 2)) == "native"


def _unaligned_copy(t):
    """Return a copy of t whose data_ptr is 4 bytes past a 16-byte boundary (like a memory-mapped checkpoint)."""
    storage = torch.empty(t.numel() + 4, dtype=t.dtype)
    offset = next(i for i in range(4) if (storage.data_ptr() + i * t.element_size()) % 16 == 4)
    return storage[offset : offset + t.numel()].view_as(t).copy_(t)


@pytest.mark.parametrize(
    "release, aligned, expected",
    [
        ((2, 8, 0), True, "fallback"),  # no CPU kernel at all
        ((2, 10, 0), True, "native"),
        ((2, 10, 0), False, "fallback"),  # CPU kernel needs 16-byte aligned data on torch <= 2.10
        ((2, 11, 0), False, "native"),
    ],
    ids=["torch2.8", "torch2.10-aligned", "torch2.10-unaligned", "torch2.11-unaligned"],
)
def test_choose_path_cpu_version_rules(release, aligned, expected, monkeypatch):
    if not native_grouped_mm_available():
        pytest.skip("no native grouped_mm in this torch")
    monkeypatch.setattr(backends.grouped, "_torch_release", lambda: release)
    x, w, _ = _grouped_operands()
    if not aligned:
        w = _unaligned_copy(w)
        assert w.data_ptr() % 16 != 0
    assert choose_grouped_mm_path(x, w) == expected


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
def test_grouped_mm_without_native_op(dtype, monkeypatch):
    # An old torch without either op: every call, eager or compiled, must take the fallback.
    monkeypatch.delattr(torch.nn.functional, "grouped_mm", raising=False)
    monkeypatch.delattr(torch, "_grouped_mm", raising=False)
    assert not native_grouped_mm_available()
    module, hidden, index, weights, _ = _inputs("skewed_T16_E8", dtype, "gpt_oss")
    y, names = _profiled_names(REFERENCE_BACKENDS["grouped_mm"], module, hidden, index, weights)
    assert FALLBACK_OP in names and "aten::_grouped_mm" not in names
    assert _rel_err(y, oracle_forward(module, hidden, index, weights)) <= TOLERANCE[dtype]


@pytest.mark.skipif(not native_grouped_mm_available(), reason="no native grouped_mm in this torch")
def test_eager_mode_fp32_grouped_mm_runs_native():
    # Outside torch.compile, float32 is fine for the native kernel (on CPU with torch > 2.8).
    module, hidden, index, weights, _ = _inputs("T9_E6", torch.float32)
    _, names = _profiled_names(REFERENCE_BACKENDS["grouped_mm"], module, hidden, index, weights)
    assert "aten::_grouped_mm" in names and FALLBACK_OP not in names


# --- torch.compile ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
def test_compiled_grouped_mm_path(dtype, fresh_dynamo):
    if dtype == torch.bfloat16 and not native_grouped_mm_available():
        pytest.skip("no native grouped_mm in this torch")
    module, hidden, index, weights, _ = _inputs("T9_E6", dtype)
    compiled = torch.compile(REFERENCE_BACKENDS["grouped_mm"], backend="eager", fullgraph=True)
    y, names = _profiled_names(compiled, module, hidden, index, weights)
    fallback = any("grouped_mm_fallback" in name for name in names)
    native = any(name in ("aten::_grouped_mm", "aten::grouped_mm") for name in names)
    # fp32 cannot be traced through the native op (its fake kernel is bf16-only): fallback. bf16: native.
    assert (fallback, native) == ((True, False) if dtype == torch.float32 else (False, True))
    assert _rel_err(y, oracle_forward(module, hidden, index, weights)) <= TOLERANCE[dtype]


@pytest.mark.skipif(not native_grouped_mm_available(), reason="no native grouped_mm in this torch")
def test_compiled_bf16_on_torch_2_10_cpu_skips_alignment_check(monkeypatch, fresh_dynamo):
    # data_ptr() cannot be traced; on torch <= 2.10 the alignment rule must not break fullgraph.
    monkeypatch.setattr(backends.grouped, "_torch_release", lambda: (2, 10, 0))
    module, hidden, index, weights, _ = _inputs("T9_E6", torch.bfloat16)
    compiled = torch.compile(REFERENCE_BACKENDS["grouped_mm"], backend="eager", fullgraph=True)
    y, names = _profiled_names(compiled, module, hidden, index, weights)
    assert "aten::_grouped_mm" in names
    assert _rel_err(y, oracle_forward(module, hidden, index, weights)) <= TOLERANCE[torch.bfloat16]


def test_eager_backend_breaks_fullgraph(fresh_dynamo):
    module, hidden, index, weights, _ = _inputs("T9_E6", torch.float32)
    compiled = torch.compile(REFERENCE_BACKENDS["eager"], backend="eager", fullgraph=True)
    with pytest.raises(Exception, match="data-dependent|Data-dependent|nonzero|dynamic"):
        compiled(module, hidden, index, weights)


@pytest.mark.parametrize("routing", ROUTINGS)
@pytest.mark.parametrize("layout", ["default", "gpt_oss", "non_gated"])
@pytest.mark.parametrize("backend", ["batched_mm", "grouped_mm"])
def test_fullgraph_compiles(backend, layout, routing, fresh_dynamo):
    module, hidden, index, weights, scores = _inputs("skewed_T16_E8", torch.float32, layout)
    routing_weights = weights if routing == "TK" else scores
    compiled = torch.compile(REFERENCE_BACKENDS[backend], backend="eager", fullgraph=True)
    y = compiled(module, hidden, index, routing_weights)
    assert _rel_err(y, oracle_forward(module, hidden, index, routing_weights)) <= TOLERANCE[torch.float32]


def _grads(fn, layout):
    """Run fn on fresh inputs (float32, skewed routing), backprop a fixed cotangent; return output and grads."""
    module, hidden, index, weights, _ = _inputs("skewed_T16_E8", torch.float32, layout)
    hidden.requires_grad_(True)
    weights.requires_grad_(True)
    y = fn(module, hidden, index, weights)
    y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(7)))
    grads = {name: p.grad for name, p in module.named_parameters()}
    return y.detach(), {"hidden": hidden.grad, "weights": weights.grad, **grads}


@pytest.mark.parametrize("layout", ["default", "gpt_oss"])
def test_training_grads_agree(layout, fresh_dynamo):
    # grouped_mm in eager mode runs the native kernel; compiled with aot_eager in fp32 it runs the
    # fallback op and its backward op. Both must give batched_mm's gradients.
    expected_y, expected = _grads(REFERENCE_BACKENDS["batched_mm"], layout)
    compiled = torch.compile(REFERENCE_BACKENDS["grouped_mm"], backend="aot_eager", fullgraph=True)
    (y_compiled, compiled_grads), names = _profiled_names(_grads, compiled, layout)
    assert "harness_ref::grouped_mm_fallback_backward" in names
    for y, grads in [_grads(REFERENCE_BACKENDS["grouped_mm"], layout), (y_compiled, compiled_grads)]:
        torch.testing.assert_close(y, expected_y, rtol=1e-5, atol=1e-5)
        for name, grad in expected.items():
            torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)
