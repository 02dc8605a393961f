"""Cells that share one claim, written as few rules as a person would: the largest boxes of axis values that
match exactly those cells (an axis left out when every value of it is in the box)."""

from __future__ import annotations

from typing import Any

from harness.cells.cell import Cell
from harness.config.vocabulary import AXES


def boxes(group: list[Cell], universe: list[Cell]) -> list[dict[str, tuple[Any, ...]]]:
    """Matches ({axis: values}, source and backend included) that together select exactly `group`.

    `group` cells share one source and backend; `universe` is every cell of the matrix. A box names an axis only
    where it narrows the cells of that backend; when the box would also take a cell outside the group, the group
    is split along the first axis (in AXES order) on which it varies, and each part boxed again.
    """
    source, backend = group[0].source, group[0].backend
    peers = [c for c in universe if (c.source, c.backend) == (source, backend)]
    return [{"source": (source,), "backend": (backend,), **box} for box in _boxes(group, peers)]


def _boxes(group: list[Cell], peers: list[Cell]) -> list[dict[str, tuple[Any, ...]]]:
    box = _box(group, peers)
    ids = {c.id for c in group}
    exact = lambda b: all(c.id in ids for c in peers if _inside(c, b))  # noqa: E731
    if len(group) == 1 or exact(box):
        for axis in list(box):  # leave out what narrows nothing (fullgraph: false already excludes uncompiled)
            if len(box) > 1 and exact({a: v for a, v in box.items() if a != axis}):
                del box[axis]
        return [box]
    axis = next(a for a in AXES if len({getattr(c, a) for c in group}) > 1)
    parts: dict[Any, list[Cell]] = {}
    for cell in group:
        parts.setdefault(getattr(cell, axis), []).append(cell)
    return [b for part in parts.values() for b in _boxes(part, peers)]


def _box(group: list[Cell], peers: list[Cell]) -> dict[str, tuple[Any, ...]]:
    box = {}
    for axis in AXES:
        values = {getattr(c, axis) for c in group}
        domain = {getattr(c, axis) for c in peers}
        if values != domain and None not in values:  # fullgraph None (uncompiled) cannot be named in a rule
            order = [v for v in _ordered(domain) if v in values]
            box[axis] = tuple(order)
    return box


def _inside(cell: Cell, box: dict[str, tuple[Any, ...]]) -> bool:
    return all(getattr(cell, axis) in values for axis, values in box.items())


def _ordered(values: set[Any]) -> list[Any]:
    return sorted(values, key=lambda v: (v is None, str(v)))
