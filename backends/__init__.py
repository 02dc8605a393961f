"""Reference MoE experts backends, a float64 oracle and a test experts module, in transformers' conventions.

Backends are importable by dotted path, e.g. `backends.reference:grouped_mm_experts_forward`.
"""

import importlib

# Lazy (PEP 562): `import backends.layouts` must not import torch (matrix validation runs without it), so the
# package imports a submodule only when one of its names is first used.
_EXPORTS = {
    "LAYOUTS": "layouts",
    "DENSE_ROUTING_LAYOUTS": "layouts",
    "Experts": "experts",
    "make_experts": "experts",
    "FALLBACK_BACKWARD_OP": "grouped",
    "FALLBACK_OP": "grouped",
    "choose_grouped_mm_path": "grouped",
    "grouped_mm": "grouped",
    "native_grouped_mm_available": "grouped",
    "oracle_forward": "oracle",
    "REFERENCE_BACKENDS": "reference",
    "batched_mm_experts_forward": "reference",
    "eager_experts_forward": "reference",
    "grouped_mm_experts_forward": "reference",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import the submodule that defines `name` on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
