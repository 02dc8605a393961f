"""The thing a kernel-level cell runs: an experts module and an ExpertsInterface function, per source."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from harness.config.matrix import resolve_impl


@dataclass
class Subject:
    """An experts module and the function `fn(module, hidden_states, top_k_index, top_k_weights)` to run on it."""

    module: Any
    fn: Callable
    dense_routing: bool = False  # routing weights as [T, E] instead of [T, K]
    expected_ops: tuple[str, ...] = ()  # profiler evidence that the named backend really ran (dispatch proof)
    forbidden_ops: tuple[str, ...] = ()  # profiler evidence that another backend ran instead
    info: dict[str, Any] = field(default_factory=dict)  # facts about the subject, copied into the cell's signals


def load_subject(spec: dict[str, Any], device, dtype) -> Subject:
    """Build the cell's subject: transformers' own classes for that source, our Experts module otherwise."""
    if spec["cell"]["source"] == "transformers":
        from harness.sources.transformers_experts import load_subject as load_transformers_subject

        return load_transformers_subject(spec, device, dtype)
    return _reference_subject(spec, device, dtype)


def _reference_subject(spec: dict[str, Any], device, dtype) -> Subject:
    from backends.experts import DENSE_ROUTING_LAYOUTS, make_experts

    cell, shape = spec["cell"], spec["shape"]
    module = make_experts(shape["experts"], shape["hidden"], shape["intermediate"], layout=cell["layout"],
                          dtype=dtype, device=device, seed=spec["seed"])
    return Subject(module, resolve_impl(spec["impl"]), dense_routing=cell["layout"] in DENSE_ROUTING_LAYOUTS)
