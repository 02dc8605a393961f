"""Build a kernel-level cell's subject for its source: transformers' own experts, or our reference module."""

from __future__ import annotations

from typing import Any

from harness.config.matrix import resolve_impl
from harness.sources.subject import Subject
from harness.sources.transformers_experts import load_subject as load_transformers_subject


def load_subject(spec: dict[str, Any], device, dtype) -> Subject:
    """Build the cell's subject: transformers' own classes for that source, our Experts module otherwise."""
    if spec["cell"]["source"] == "transformers":
        return load_transformers_subject(spec, device, dtype)
    return _reference_subject(spec, device, dtype)


def _reference_subject(spec: dict[str, Any], device, dtype) -> Subject:
    from backends.experts import DENSE_ROUTING_LAYOUTS, make_experts

    cell, shape = spec["cell"], spec["shape"]
    module = make_experts(shape["experts"], shape["hidden"], shape["intermediate"], layout=cell["layout"],
                          dtype=dtype, device=device, seed=spec["seed"])
    return Subject(module, resolve_impl(spec["impl"]), dense_routing=cell["layout"] in DENSE_ROUTING_LAYOUTS)
