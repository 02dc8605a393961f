"""Standalone reproduction of compile-matrix cell transformers-tf_eager_model-default-bfloat16-fullgraph-cpu-decode-model.

Observed: compile_error: torch._dynamo.exc.UserError: Consider annotating your code using torch._check*(). Could not extract specialized integer from data-dependent expression u0 (unhinted: u0).  (Size-like symbols: u0)
      on: torch 2.13.0, transformers 5.23.0, cpu
Backend: harness.source_transformers:eager (transformers); mode=default, dtype=bfloat16, fullgraph=True, device=cpu, shape=decode {'tokens': [1, 4, 1], 'hidden': 64, 'intermediate': 32, 'experts': 8, 'top_k': 2, 'routing': 'uniform'}, layout=default, scope=model, phase=inference.
Harness command: python -m harness run --matrix matrix.yaml --cell transformers-tf_eager_model-default-bfloat16-fullgraph-cpu-decode-model [--transformers-src PATH]

Needs only torch and transformers; run it as `python THIS_FILE`. To test a transformers checkout,
run `PYTHONPATH=CHECKOUT/src python THIS_FILE`: the first line printed names the versions and the
transformers folder imported.
Exit status: 1 (with the traceback) when a check fails, 0 when every check passes.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
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

# ---- inlined from harness/tf_dispatch.py: which experts function each experts module called ---------------------------
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


class NoSignals:
    """Stand-in for the harness's SignalCollector around generate(): this script collects no signals."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None

    def result(self):
        return {}


# ---- inlined from harness/model_checks.py: the uncompiled checks ------------------------------------------------------
import os
from typing import Any


INTERFACE_BACKENDS = ("eager", "batched_mm", "grouped_mm")  # the documented, CPU-capable backends
VOCAB_VL = 128


class CheckFailed(RuntimeError):
    """A model-level check that did not hold; `kind` becomes the error type in results.json."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def build_checkpoint(fam, shape: dict[str, Any], seed: int, folder: str) -> str:
    """Save a tiny random causal LM of the family with save_pretrained; return its folder."""
    import torch

    config = fam.config(shape["hidden"], shape["intermediate"], shape["experts"], shape["top_k"])
    torch.manual_seed(seed)
    path = os.path.join(folder, fam.model_type)
    fam.cls(fam.causal_lm_class)(config).save_pretrained(path)
    return path


def load(path: str, form, dtype, device, auto: str = "AutoModelForCausalLM"):
    """from_pretrained(path, experts_implementation=form) in eval mode on the device."""
    import transformers

    model = getattr(transformers, auto).from_pretrained(path, experts_implementation=form, dtype=dtype)
    return model.to(device).eval()


def input_ids(seed: int, tokens: int, call: int, device, vocab: int):
    """Seeded random prompt [1, tokens] (the same on every machine)."""
    import torch

    gen = torch.Generator().manual_seed(seed * 1000 + 700 + call)
    return torch.randint(0, vocab, (1, tokens), generator=gen).to(device)


def spied_logits(model, ids, expected: dict[str, str] | str, where: str):
    """Logits of one uncompiled forward; MisDispatch unless each experts module ran what `expected` says."""
    import torch

    modules = tf_dispatch.experts_modules(model)
    if not modules:
        raise CheckFailed("MisDispatch", f"{where}: the model has no experts module using the experts interface")
    want = {name: expected for name in modules} if isinstance(expected, str) else expected
    with tf_dispatch.spy(modules) as log, torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits
    try:
        tf_dispatch.check(log, want, where)
    except tf_dispatch.MisDispatch as exc:
        raise CheckFailed("MisDispatch", str(exc)) from None
    return logits


def check_configured(model, key: str, where: str) -> None:
    """Every experts module's config names `key`."""
    wrong = {name: module.config._experts_implementation for name, module in tf_dispatch.experts_modules(model).items()
             if module.config._experts_implementation != key}
    if wrong:
        name, got = next(iter(sorted(wrong.items())))
        raise CheckFailed("MisDispatch", f"{where}: {len(wrong)} experts modules configured {got!r} "
                                         f"(e.g. {name}), expected {key!r}")


def check_load_forms(path: str, key: str, dtype, device, ids, checks: list) -> Any:
    """Load with the string and the {"": X} form; both dispatch X. Returns the string-form model."""
    model = None
    for label, form in (("string", key), ("dict_global", {"": key})):
        loaded = load(path, form, dtype, device)
        where = f"from_pretrained(experts_implementation={form!r})"
        check_configured(loaded, key, where)
        spied_logits(loaded, ids, key, where)
        checks.append({"check": f"load_{label}", "ok": True})
        model = model or loaded
    return model


def check_runtime_switch(model, key: str, ids, reference, tolerance: float, checks: list) -> dict[str, float]:
    """set_experts_implementation to every other backend and back, no reload; outputs agree within tolerance."""
    errors = {}
    for other in [name for name in INTERFACE_BACKENDS if name != key] + [key]:
        model.set_experts_implementation(other)
        where = f"set_experts_implementation({other!r})"
        check_configured(model, other, where)
        logits = spied_logits(model, ids, other, where)
        errors[other] = relative_error(logits, reference)
        if errors[other] > tolerance:
            raise CheckFailed("Mismatch", f"{where}: logits differ from the eager reference by "
                                          f"{errors[other]:.3g} > tolerance {tolerance:g}")
    checks.append({"check": "runtime_switch", "ok": True, "rel_errors": errors})
    return errors


def check_subconfigs(key: str, shape: dict[str, Any], seed: int, folder: str, dtype, device, checks: list) -> None:
    """A per-sub-config dict on a tiny Qwen3-VL-MoE: the text and vision sub-models each get their own."""
    other = "eager" if key != "eager" else "batched_mm"
    path = _vl_checkpoint(shape, seed, folder)
    form = {"text_config": key, "vision_config": other}
    model = load(path, form, dtype, device, auto="AutoModelForImageTextToText")
    where = f"from_pretrained(experts_implementation={form!r})"
    got = model.get_experts_implementation()
    text, vision = model.model.language_model, model.model.visual
    seen = {"text_config": text.config._experts_implementation, "vision_config": vision.config._experts_implementation}
    if seen != form or got.get("text_config") != key or got.get("vision_config") != other:
        raise CheckFailed("MisDispatch", f"{where}: sub-models got {seen}, get_experts_implementation() = {got}")
    ids = input_ids(seed, 5, 0, device, VOCAB_VL)
    spied_logits(model, ids, key, where)
    model.set_experts_implementation({"text_config": other})
    spied_logits(model, ids, other, "set_experts_implementation({'text_config': %r})" % other)
    checks.append({"check": "per_subconfig", "ok": True, "model": type(model).__name__, "form": form})


def relative_error(out, ref) -> float:
    """max|out - ref| / max|ref| in float64."""
    import torch

    out64, ref64 = out.detach().to("cpu", torch.float64), ref.detach().to("cpu", torch.float64)
    if not torch.isfinite(out64).all():
        return float("inf")
    return (out64 - ref64).abs().max().item() / (ref64.abs().max().item() or 1.0)


def _vl_checkpoint(shape: dict[str, Any], seed: int, folder: str) -> str:
    """Save a tiny Qwen3-VL-MoE (MoE text model, small vision tower) and return its folder."""
    import torch
    from transformers import Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration

    hidden = shape["hidden"]
    head_dim = max(8, hidden // 4)
    # mrope splits head_dim/2 rotary frequencies over (t, h, w).
    half = head_dim // 2
    text = {"vocab_size": VOCAB_VL, "hidden_size": hidden, "intermediate_size": 2 * shape["intermediate"],
            "moe_intermediate_size": shape["intermediate"], "num_experts": shape["experts"],
            "num_experts_per_tok": shape["top_k"], "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": head_dim, "max_position_embeddings": 256,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "mrope_section": [half - 2 * (half // 3), half // 3, half // 3]}}
    vision = {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": hidden,
              "patch_size": 4, "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 16,
              "deepstack_visual_indexes": [0]}
    torch.manual_seed(seed)
    path = os.path.join(folder, "qwen3_vl_moe")
    Qwen3VLMoeForConditionalGeneration(Qwen3VLMoeConfig(text_config=text, vision_config=vision)).save_pretrained(path)
    return path

# ---- inlined from harness/model_generate.py: generate() with a static cache -------------------------------------------
from typing import Any


NEW_TOKENS = 4
PROMPT_TOKENS = 5


def run_generate(model, key: str, cell: dict[str, Any], ids, collector) -> dict[str, Any]:
    """generate() with a static cache (compiled per the cell's mode) under `collector`; CheckFailed on a broken claim."""
    from transformers.generation.configuration_utils import CompileConfig

    original = model.get_experts_implementation()
    calls: list[Any] = []
    set_impl = model.set_experts_implementation

    def _recording(value):
        calls.append(value)
        return set_impl(value)

    model.set_experts_implementation = _recording  # instance attribute: generate() calls self.set_...
    kwargs: dict[str, Any] = {"max_new_tokens": NEW_TOKENS, "do_sample": False, "cache_implementation": "static",
                              "pad_token_id": 0}
    if cell["mode"] == "uncompiled":
        kwargs["disable_compile"] = True
    else:
        config = CompileConfig(fullgraph=bool(cell["fullgraph"]),
                               mode=None if cell["mode"] == "default" else cell["mode"])
        config._compile_all_devices = True  # generate() auto-compiles on cuda only unless told
        kwargs["compile_config"] = config
    try:
        with collector:
            out = model.generate(ids, **kwargs)
    finally:
        del model.set_experts_implementation
    expect_switch = model.device.type != "cpu" and "grouped_mm" in original.values()
    switched = {k: "batched_mm" if v == "grouped_mm" else v for k, v in original.items()}
    result = {"switch_calls": calls, "expected_switch": expect_switch, "new_tokens": int(out.shape[1] - ids.shape[1]),
              "compiled": cell["mode"] != "uncompiled" and getattr(model, "_compiled_call", None) is not None,
              "restored": model.get_experts_implementation() == original}
    result.update({name: value for name, value in collector.result().items()
                   if name in ("recompiles", "recompile_reasons", "graph_breaks", "graph_break_reasons",
                               "unique_graphs", "cudagraph_skips")})
    if expect_switch and calls[:1] != [switched]:
        raise CheckFailed("DecodeSwitch", f"generate() on {model.device.type} with {original} did not switch to "
                                          f"batched_mm for decoding (set_experts_implementation calls: {calls})")
    if not expect_switch and any(call != original for call in calls):
        raise CheckFailed("DecodeSwitch", f"generate() on {model.device.type} with {original} switched the experts "
                                          f"implementation (calls: {calls}); the docs say it stays on CPU")
    if not result["restored"]:
        raise CheckFailed("NotRestored", f"after generate() the experts implementation is "
                                         f"{model.get_experts_implementation()}, was {original}")
    check_configured(model, key, "after generate()")
    return result

# ---- inlined from harness/cell_run.py: the profiler evidence check, device sync ---------------------------------------
def dispatch_proof(subject, ops: list[str]) -> tuple[str, dict[str, Any] | None]:
    """("pass", None), or a MisDispatch runtime_error when the profiled ops show another backend ran."""
    missing = [op for op in subject.expected_ops if not any(op in name for name in ops)]
    foreign = [op for op in subject.forbidden_ops if any(op in name for name in ops)]
    if missing or foreign:  # the backend the cell names did not run (or not alone)
        what = (f"expected ops {missing} not seen" if missing else "") + ("; " if missing and foreign else "") \
            + (f"ops of another backend {foreign} seen" if foreign else "")
        return "runtime_error", {"type": "MisDispatch", "phase": "profile", "message": f"{what}; ran {ops}"}
    return "pass", None


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def dispatch_evidence(call, device):
    """(ops, error or None): the op names the harness keeps from one call under the profiler, against EVIDENCE."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        call()
        _sync(device)
    ops = sorted({event.name for event in prof.events() if INTERESTING_OP.search(event.name)})
    return ops, dispatch_proof(types.SimpleNamespace(expected_ops=EVIDENCE[0], forbidden_ops=EVIDENCE[1]), ops)[1]


# The backend under test: every experts module dispatches on this key ('eager': the class's own forward).
EXPERTS_IMPLEMENTATION = 'eager'
# Profiler evidence that the backend ran, as the harness checks it: (ops that must appear, ops of another backend).
EVIDENCE = ((), ('grouped_mm',))
INTERESTING_OP = re.compile('grouped_mm|bmm|::mm$|::addmm$|fallback|cudaGraphLaunch')  # the op names the harness keeps
SPEC = {'cell': {'source': 'transformers',
          'backend': 'tf_eager_model',
          'mode': 'default',
          'dtype': 'bfloat16',
          'fullgraph': True,
          'device': 'cpu',
          'shape': 'decode',
          'layout': 'default',
          'scope': 'model',
          'phase': 'inference'},
 'impl': 'harness.source_transformers:eager',
 'shape': {'tokens': [1, 4, 1],
           'hidden': 64,
           'intermediate': 32,
           'experts': 8,
           'top_k': 2,
           'routing': 'uniform'},
 'tolerance': 0.03,
 'max_recompiles': 1,
 'seed': 60619}


def compiled_forward(model, reference, device) -> None:
    """The whole model's forward as the cell compiles it, once per token count, logits vs the reference."""
    shape, tolerance = SPEC["shape"], SPEC["tolerance"]
    forward = torch.compile(model.forward, mode=None, fullgraph=True)
    with torch.no_grad():
        for call, tokens in enumerate(shape["tokens"]):
            ids = input_ids(SPEC["seed"], tokens, call, device, VOCAB)
            logits = forward(input_ids=ids, use_cache=False).logits  # a compile or runtime failure raises here
            rel = relative_error(logits, reference(input_ids=ids, use_cache=False).logits)
            print(f"compiled forward, call {call} ({tokens} tokens): logits max relative error {rel:.3g} "
                  f"(tolerance {tolerance:g})")
            if rel > tolerance:
                raise AssertionError(f"call {call} ({tokens} tokens): logits max relative error {rel:.3g} > "
                                     f"tolerance {tolerance:g}")
        ids = input_ids(SPEC["seed"], shape["tokens"][0], 0, device, VOCAB)
        ops, error = dispatch_evidence(lambda: forward(input_ids=ids, use_cache=False), device)
    if error:
        raise CheckFailed(error["type"], f"profiled compiled call: {error['message']}")
    print(f"compiled forward, profiled call: ops {ops}")


def main() -> int:
    """Build a tiny random model of the cell's family and run the harness's model-level checks on it."""
    cell, shape, seed, key = SPEC["cell"], SPEC["shape"], SPEC["seed"], EXPERTS_IMPLEMENTATION
    device, dtype = torch.device(cell["device"]), getattr(torch, cell["dtype"])
    print(f"torch {torch.__version__}, transformers {transformers.__version__} "
          f"({os.path.dirname(transformers.__file__)}), device {device}, cell {cell}")
    folder = tempfile.mkdtemp(prefix="repro-model-")
    checks = []
    try:
        path = build_checkpoint(family(cell["layout"]), shape, seed, folder)
        reference = load(path, "eager", dtype, device)  # the eager experts, uncompiled, in the cell's dtype
        print(f"model {type(reference).__name__} saved and reloaded from {path}")
        probe = input_ids(seed, 6, 99, device, VOCAB)
        with torch.no_grad():
            probe_ref = reference(input_ids=probe, use_cache=False).logits
        model = check_load_forms(path, key, dtype, device, probe, checks)
        check_runtime_switch(model, key, probe, probe_ref, SPEC["tolerance"], checks)
        if cell["layout"] == "default":
            check_subconfigs(key, shape, seed, folder, dtype, device, checks)
        print("uncompiled checks passed: " + ", ".join(check["check"] for check in checks))
        compiled_forward(model, reference, device)
        prompt = input_ids(seed, 5, 98, device, VOCAB)
        result = run_generate(model, key, cell, prompt, NoSignals())
        print(f"generate: {result}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("did not reproduce: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
