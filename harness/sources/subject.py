"""The thing a kernel-level cell runs: an experts module and the function to run on it, whatever its source."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Subject:
    """An experts module and the function `fn(module, hidden_states, top_k_index, top_k_weights)` to run on it."""

    module: Any
    fn: Callable
    dense_routing: bool = False  # routing weights as [T, E] instead of [T, K]
    expected_ops: tuple[str, ...] = ()  # profiler evidence that the named backend really ran (dispatch proof)
    forbidden_ops: tuple[str, ...] = ()  # profiler evidence that another backend ran instead
    info: dict[str, Any] = field(default_factory=dict)  # facts about the subject, copied into the cell's signals
