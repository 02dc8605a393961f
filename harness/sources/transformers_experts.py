"""Source `transformers`: transformers' own experts classes and ExpertsInterface functions as the system under test.

A transformers backend is named after its ExpertsInterface key (`backends: {transformers: registered}` in
matrix.yaml: `eager` plus every key the release registers). The harness sets that key as the config's
`_experts_implementation` and simply calls the experts module, so the call goes through transformers' real
dispatch (`use_experts_implementation` -> `ALL_EXPERTS_FUNCTIONS.get_interface(...)`); `eager` runs the
experts class's own forward. The experts module is transformers' class of the cell's
family (harness/sources/families.py), built from a tiny config with seeded weights.

Dispatch proof, twice: an uncompiled probe call under the spy of harness/sources/dispatch.py (as transformers'
tests do) must reach exactly the named function, and the profiled compiled call must not show the ops of
another backend (Subject.forbidden_ops / expected_ops).

Importing this module does not import transformers (matrix loading imports it in the CLI process).
"""

from __future__ import annotations

import os
from typing import Any

from harness.sources.subject import Subject

# Profiler evidence per backend on a compiled call: (ops that must appear, ops that must not).
# Inductor on CPU turns bmm into generated code, so batched_mm has positive evidence only uncompiled.
_EVIDENCE = {
    "eager": ((), ("grouped_mm", "bmm")),
    "batched_mm": ((), ("grouped_mm",)),
    "grouped_mm": (("grouped_mm",), ("bmm",)),
}


def call_experts(module, hidden_states, top_k_index, top_k_weights):
    """The subject's function for every transformers backend: the module's own (dispatching) forward."""
    return module(hidden_states, top_k_index, top_k_weights)


def load_subject(spec: dict[str, Any], device, dtype) -> Subject:
    """The cell's experts module (transformers' class of the layout's family) configured for the named backend."""
    check_imported_source()
    key = implementation_key(spec)
    module, fam = build_experts(spec, key, device, dtype)
    probe_dispatch(spec, module, fam, key, device, dtype)
    expected, forbidden = evidence(key, spec["cell"]["mode"])
    info = {"experts_class": f"{type(module).__module__}.{type(module).__name__}", "experts_implementation": key}
    return Subject(module, call_experts, dense_routing=fam.dense_routing, expected_ops=expected,
                   forbidden_ops=forbidden, info=info)


def probe_dispatch(spec: dict[str, Any], module, fam, key: str, device, dtype) -> None:
    """The first dispatch proof: raise MisDispatch unless an uncompiled probe call reaches implementation `key`."""
    from harness.sources import dispatch as tf_dispatch

    name = type(module).__name__
    with tf_dispatch.spy({name: module}) as log:
        try:
            _probe(module, spec["shape"], fam.dense_routing, device, dtype, spec["seed"])
        except Exception:  # noqa: BLE001 - only the dispatch matters here; the cell's calls report errors
            pass
    tf_dispatch.check(log, {name: key}, "uncompiled probe call")


def evidence(key: str, mode: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The second dispatch proof's profiler evidence: (ops that must appear, ops of another backend)."""
    expected, forbidden = _EVIDENCE.get(key, ((), ()))
    if key == "batched_mm" and mode == "uncompiled":
        expected = ("bmm",)
    return expected, forbidden


def build_experts(spec: dict[str, Any], key: str, device, dtype):
    """(module, family): the family's experts class from its tiny config, seeded weights, `key` configured."""
    from harness.sources.families import family

    cell, shape = spec["cell"], spec["shape"]
    fam = family(cell["layout"])
    config = fam.config(shape["hidden"], shape["intermediate"], shape["experts"], shape["top_k"])
    config._experts_implementation = key  # read by the class's forward at every call: the dispatch
    module = fam.cls(fam.experts_class)(config)
    init_experts(module, spec["seed"])
    module.to(device=device, dtype=dtype)
    return module, fam


def implementation_key(spec: dict[str, Any]) -> str:
    """The cell's experts_implementation key (its backend's name); KeyError if this transformers lacks it."""
    key = spec["cell"]["backend"]
    if key != "eager":
        from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

        if key not in ALL_EXPERTS_FUNCTIONS:
            raise KeyError(f"{key!r} is not registered in this transformers' ExpertsInterface "
                           f"(registered: {', '.join(sorted(ALL_EXPERTS_FUNCTIONS))})")
    return key


def registered_implementations() -> list[str]:
    """The keys of ALL_EXPERTS_FUNCTIONS in the transformers this process imports, plus `eager`."""
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    return ["eager"] + sorted(ALL_EXPERTS_FUNCTIONS)


def check_imported_source() -> None:
    """RuntimeError unless transformers was imported from the --transformers-src tree when one was given."""
    import transformers

    from harness.environment.transformers_src import selected_src

    src = selected_src()
    if src and not os.path.abspath(transformers.__file__).startswith(os.path.join(os.path.abspath(src), "")):
        raise RuntimeError(f"transformers was imported from {transformers.__file__}, not from the "
                           f"--transformers-src tree {src}")


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
