"""matrix.yaml as typed data: backends, shapes, slices, rules, and the points the slices admit."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any, Callable

from harness.config.vocabulary import (AXES, CUDAGRAPH_MODES, DEVICES, DTYPES, EXPECTS, FAIL_STATUSES, MODES,
                                       OPTIONAL_AXES, PHASES, ROUTINGS, RULE_KEYS, SCHEMA_VERSION, SCOPES, SOURCES)

__all__ = ["AXES", "CUDAGRAPH_MODES", "DEVICES", "DTYPES", "EXPECTS", "FAIL_STATUSES", "MODES", "OPTIONAL_AXES",
           "PHASES", "ROUTINGS", "RULE_KEYS", "SCHEMA_VERSION", "SCOPES", "SOURCES", "Backend", "Matrix", "Rule",
           "Shape", "Slice", "admitted_points", "capability_satisfies", "resolve_impl"]

CAPABILITY = re.compile(r"\s*(>=|<=|==|>|<)\s*(\d+)\.(\d+)\s*")


@dataclass(frozen=True)
class Backend:
    """One implementation of one source: `eager`, `batched_mm`, `grouped_mm`, ... of reference, transformers or user."""

    name: str
    source: str
    impl: str | None  # dotted `package.module:function`; None for transformers (dispatched by its name)


@dataclass(frozen=True)
class Slice:
    """A part of the axes that runs: cells whose values the slice admits (axes it does not name: any value)."""

    name: str
    match: tuple[tuple[str, tuple[Any, ...]], ...]
    line: int

    def admits(self, values: dict[str, Any]) -> bool:
        """True when every axis the slice names admits the cell's value."""
        return all(values.get(axis) in allowed for axis, allowed in self.match)


@dataclass(frozen=True)
class Shape:
    """Input sizes for a cell; `tokens` lists the token count of each call."""

    name: str
    tokens: tuple[int, ...]
    hidden: int
    intermediate: int
    experts: int
    top_k: int
    routing: str


@dataclass(frozen=True)
class Rule:
    """One expectation: cells matching `match` are expected to `expect` (pass or fail), with a reason."""

    match: tuple[tuple[str, tuple[Any, ...]], ...]
    expect: str
    statuses: tuple[str, ...] | None
    error_match: str | None
    reason: str
    line: int
    compute_capability: str | None = None  # e.g. ">=9.0": the rule holds only on such CUDA devices

    def matches(self, values: dict[str, Any], capability: tuple[int, int] | None = None,
                ignore_capability: bool = False) -> bool:
        """True when every named axis admits the cell's value and the device meets the capability condition."""
        if not all(values.get(axis) in allowed for axis, allowed in self.match):
            return False
        if self.compute_capability is None or ignore_capability:
            return True
        return capability is not None and capability_satisfies(capability, self.compute_capability)


def capability_satisfies(capability: tuple[int, int], condition: str) -> bool:
    """Whether a (major, minor) compute capability meets a condition such as '>=9.0'."""
    op, major, minor = CAPABILITY.fullmatch(condition).groups()
    wanted = (int(major), int(minor))
    return {">=": capability >= wanted, "<=": capability <= wanted, "==": capability == wanted,
            ">": capability > wanted, "<": capability < wanted}[op]


@dataclass(frozen=True)
class Matrix:
    """A validated matrix.yaml."""

    path: str
    backends: dict[tuple[str, str], Backend]  # (source, name) -> Backend, in file order
    axes: dict[str, tuple[Any, ...]]
    shapes: dict[str, Shape]
    tolerances: dict[str, float]
    time_limit_s: float
    max_recompiles: int
    rules: tuple[Rule, ...]  # in file order: the last matching rule wins
    slices: tuple[Slice, ...] = ()
    memory_limit_gb: float | None = None  # address-space cap of the executor (CPU-only cells)


def resolve_impl(impl: str) -> Callable:
    """Import `package.module:function` and return the callable (raises ImportError/AttributeError/TypeError)."""
    module_name, _, attr = impl.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{impl} is a {type(obj).__name__}, not a callable")
    return obj


def admitted_points(matrix: Matrix) -> list[tuple[Backend, tuple[Any, ...]]]:
    """Every (backend, axis values in AXES order) some slice admits, in a stable order (backends in file order,
    then the axes); an uncompiled point has fullgraph None (one control point, not one per fullgraph value)."""
    import itertools

    points = []
    for backend in matrix.backends.values():
        seen: set[tuple[Any, ...]] = set()
        for slice_ in matrix.slices:
            limits = dict(slice_.match)
            if backend.source not in limits.get("source", (backend.source,)) or \
                    backend.name not in limits.get("backend", (backend.name,)):
                continue
            # The slice's values per axis, narrowed up front (the full product is ~2k per backend).
            axes = [[value for value in matrix.axes[axis] if axis not in limits or value in limits[axis]]
                    for axis in AXES]
            seen.update(itertools.product(*axes))
        rank = {axis: {value: i for i, value in enumerate(matrix.axes[axis])} for axis in AXES}
        fullgraph_at, first_fullgraph = AXES.index("fullgraph"), matrix.axes["fullgraph"][0]
        for values in sorted(seen, key=lambda vals: [rank[axis][value] for axis, value in zip(AXES, vals)]):
            if values[AXES.index("mode")] == "uncompiled":
                if values[fullgraph_at] != first_fullgraph and \
                        (*values[:fullgraph_at], first_fullgraph, *values[fullgraph_at + 1:]) in seen:
                    continue
                values = (*values[:fullgraph_at], None, *values[fullgraph_at + 1:])
            points.append((backend, values))
    return points
