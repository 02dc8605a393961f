"""Reference MoE experts backends, a float64 oracle and a test experts module, in transformers' conventions.

Backends are importable by dotted path, e.g. `backends.reference:grouped_mm_experts_forward`.
"""

from .experts import LAYOUTS, Experts, make_experts
from .grouped import (
    FALLBACK_BACKWARD_OP,
    FALLBACK_OP,
    choose_grouped_mm_path,
    grouped_mm,
    native_grouped_mm_available,
)
from .oracle import oracle_forward
from .reference import (
    REFERENCE_BACKENDS,
    batched_mm_experts_forward,
    eager_experts_forward,
    grouped_mm_experts_forward,
)

__all__ = [
    "FALLBACK_BACKWARD_OP",
    "FALLBACK_OP",
    "LAYOUTS",
    "REFERENCE_BACKENDS",
    "Experts",
    "batched_mm_experts_forward",
    "choose_grouped_mm_path",
    "eager_experts_forward",
    "grouped_mm",
    "grouped_mm_experts_forward",
    "make_experts",
    "native_grouped_mm_available",
    "oracle_forward",
]
