"""Validation of matrix.yaml's sections: each `_parse_*` checks one section and types it, or raises HarnessError
naming the file, line and key."""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import re
from typing import Any

from harness.config.matrix import CAPABILITY, Backend, Rule, Shape, Slice, resolve_impl
from harness.config.vocabulary import (AXES, DEVICES, DTYPES, EXPECTS, FAIL_STATUSES, MODES, OPTIONAL_AXES, PHASES,
                                       ROUTINGS, RULE_KEYS, SCOPES, SOURCES)
from harness.config.yamlio import LineDict, LineList
from harness.environment.registered import registered_keys
from harness.errors import HarnessError

TOP_KEYS = ("schema", "backends", "axes", "slices", "shapes", "tolerances", "time_limit_s", "max_recompiles",
             "memory_limit_gb", "expectations")
_SHAPE_KEYS = ("tokens", "hidden", "intermediate", "experts", "top_k", "routing")
_RULE_FIELDS = ("match", "expect", "status", "error_match", "compute_capability", "reason")


class Validator:
    """Small helpers that raise HarnessError with file, line and key."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, message: str, line: int | None, key: str | None = None, allowed: str | None = None):
        raise HarnessError(message, file=self.path, line=line, key=key, allowed=allowed)

    def mapping(self, value: Any, key: str, line: int) -> LineDict:
        if not isinstance(value, LineDict):
            self.fail(f"must be a mapping, got {_kind(value)}", getattr(value, "line", line), key)
        return value

    def only_keys(self, mapping: LineDict, allowed: tuple[str, ...], where: str):
        for key in mapping:
            if key not in allowed:
                self.fail("unknown key", mapping.key_lines[key], f"{where}.{key}" if where != "(top level)" else str(key),
                          ", ".join(allowed))

    def number(self, value: Any, key: str, line: int, *, positive: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(f"must be a number, got {value!r}", line, key)
        if positive and value <= 0:
            self.fail(f"must be > 0, got {value!r}", line, key)
        return float(value)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def parse_backends(v: Validator, top: LineDict, import_backends: bool) -> dict[tuple[str, str], Backend]:
    """`backends: {reference: {name: impl}, transformers: registered | [names], user: {name: impl}}`."""
    section = v.mapping(top["backends"], "backends", top.key_lines["backends"])
    v.only_keys(section, SOURCES, "backends")
    result: dict[tuple[str, str], Backend] = {}
    for source, entry in section.items():
        line, key = section.key_lines[source], f"backends.{source}"
        if source == "transformers":
            for name in _transformers_names(v, entry, line, key):
                result[(source, name)] = Backend(name, source, None)
            continue
        entry = v.mapping(entry, key, line)
        for name, impl in entry.items():
            name_line, name_key = entry.key_lines[name], f"{key}.{name}"
            _check_name(v, name, name_line, name_key)
            if not isinstance(impl, str) or not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", impl):
                v.fail(f"must be a dotted path 'package.module:function', got {impl!r}", name_line, name_key)
            if import_backends:
                _check_importable(v, impl, name_line, name_key)
            result[(source, str(name))] = Backend(str(name), source, impl)
    if not result and "transformers" not in section:
        v.fail("must name at least one backend", section.line, "backends")
    return result


def _transformers_names(v: Validator, entry: Any, line: int, key: str) -> tuple[str, ...]:
    """`registered` (eager + ExpertsInterface's keys of the transformers under test) or an explicit list."""
    if entry == "registered":
        return registered_keys() or ()  # transformers not installed: no transformers cells
    if not isinstance(entry, list) or not entry:
        v.fail(f"must be `registered` or a list of experts implementations, got {_kind(entry)}", line, key)
    for i, name in enumerate(entry):
        _check_name(v, name, entry.item_lines[i], key)
    if len(set(entry)) != len(entry):
        v.fail("lists a backend twice", line, key)
    return tuple(map(str, entry))


def _check_name(v: Validator, name: Any, line: int, key: str) -> None:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.]+", name):
        v.fail(f"backend names use letters, digits, '_' and '.' only, got {name!r}", line, key)


def _check_importable(v: Validator, impl: str, line: int, key: str):
    if _own_function(impl):
        return
    try:
        resolve_impl(impl)
    except ModuleNotFoundError as exc:
        v.fail(f"cannot import {impl!r}: no module named {exc.name!r}", line, key)
    except AttributeError as exc:
        v.fail(f"cannot import {impl!r}: {exc}", line, key)
    except TypeError as exc:
        v.fail(f"{exc}", line, key)
    except Exception as exc:  # noqa: BLE001 - a user module may raise anything on import
        v.fail(f"importing {impl!r} raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
               line, key)


# The harness's own packages: a function they define at top level is found by reading the source, without
# importing it (backends.reference imports torch: ~2.5 s of a core the executors need on every run).
_OWN_PACKAGES = ("backends", "harness")


def _own_function(impl: str) -> bool:
    """True when `impl` names a function defined at the top level of one of the harness's own modules."""
    module_name, _, attr = impl.partition(":")
    if module_name.split(".")[0] not in _OWN_PACKAGES or "." in attr:
        return False
    try:
        spec = importlib.util.find_spec(module_name)  # imports the parent packages only; ours are lazy
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return False
    return attr in _top_level_functions(spec.origin)


@functools.lru_cache(maxsize=None)
def _top_level_functions(path: str) -> frozenset[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
    except (OSError, SyntaxError, ValueError):
        return frozenset()  # the real import reports it
    return frozenset(node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))


def parse_shapes(v: Validator, top: LineDict) -> dict[str, Shape]:
    section = v.mapping(top["shapes"], "shapes", top.key_lines["shapes"])
    result = {}
    for name, entry in section.items():
        line = section.key_lines[name]
        key = f"shapes.{name}"
        entry = v.mapping(entry, key, line)
        v.only_keys(entry, _SHAPE_KEYS, key)
        for required in _SHAPE_KEYS:
            if required not in entry:
                v.fail("missing required key", entry.line, f"{key}.{required}")
        tokens = entry["tokens"]
        if not isinstance(tokens, list) or len(set(tokens)) < 2 or not all(_posint(t) for t in tokens):
            v.fail(f"must list positive token counts with at least two different values, got {tokens!r}",
                   entry.key_lines["tokens"], f"{key}.tokens")
        for dim in ("hidden", "intermediate", "experts", "top_k"):
            if not _posint(entry[dim]):
                v.fail(f"must be a positive whole number, got {entry[dim]!r}", entry.key_lines[dim], f"{key}.{dim}")
        if entry["top_k"] > entry["experts"]:
            v.fail("top_k cannot exceed experts", entry.key_lines["top_k"], f"{key}.top_k")
        if entry["routing"] not in ROUTINGS:
            v.fail(f"unknown routing {entry['routing']!r}", entry.key_lines["routing"], f"{key}.routing",
                   ", ".join(ROUTINGS))
        result[str(name)] = Shape(str(name), tuple(tokens), entry["hidden"], entry["intermediate"],
                                  entry["experts"], entry["top_k"], entry["routing"])
    return result


def _posint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _allowed_values(axis: str, shapes: dict[str, Shape]) -> tuple[Any, ...]:
    from backends.layouts import LAYOUTS  # the layouts the experts module can build (no torch import)

    return {"mode": MODES, "dtype": DTYPES, "fullgraph": (True, False), "device": DEVICES,
            "shape": tuple(shapes), "layout": LAYOUTS, "scope": SCOPES, "phase": PHASES}[axis]


def parse_axes(v: Validator, top: LineDict, shapes: dict[str, Shape]) -> dict[str, tuple[Any, ...]]:
    section = v.mapping(top["axes"], "axes", top.key_lines["axes"])
    v.only_keys(section, AXES, "axes")
    result = {}
    for axis in AXES:
        if axis not in section and axis in OPTIONAL_AXES:
            result[axis] = OPTIONAL_AXES[axis]
            continue
        if axis not in section:
            v.fail("missing required axis", section.line, f"axes.{axis}")
        values = section[axis]
        line = section.key_lines[axis]
        if not isinstance(values, list) or not values:
            v.fail(f"must be a non-empty list, got {_kind(values)}", line, f"axes.{axis}")
        allowed = _allowed_values(axis, shapes)
        for i, value in enumerate(values):
            if value not in allowed or (axis == "fullgraph") != isinstance(value, bool):
                v.fail(f"unknown value {value!r}", values.item_lines[i], f"axes.{axis}",
                       ", ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in allowed))
        if len(set(values)) != len(values):
            v.fail("lists a value twice", line, f"axes.{axis}")
        result[axis] = tuple(values)
    return result


def parse_tolerances(v: Validator, top: LineDict) -> dict[str, float]:
    section = v.mapping(top["tolerances"], "tolerances", top.key_lines["tolerances"])
    v.only_keys(section, DTYPES, "tolerances")
    result = {}
    for dtype, value in section.items():
        result[dtype] = v.number(value, f"tolerances.{dtype}", section.key_lines[dtype], positive=True)
    return result


def _parse_match(v: Validator, match: Any, key: str, line: int, allowed: dict[str, tuple[Any, ...]],
                 empty_ok: bool = False) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """`{axis: value | [values]}` over RULE_KEYS, every value checked against what the matrix has."""
    match = v.mapping(match, key, line)
    if not match and not empty_ok:
        v.fail("must name at least one axis", match.line, key)
    parsed = []
    for axis, value in match.items():
        axis_line = match.key_lines[axis]
        if axis not in RULE_KEYS:
            v.fail("unknown axis", axis_line, f"{key}.{axis}", ", ".join(RULE_KEYS))
        values = tuple(value) if isinstance(value, list) else (value,)
        if not values:
            v.fail("must name at least one value", axis_line, f"{key}.{axis}")
        for item in values:
            if item not in allowed[axis] or (axis == "fullgraph") != isinstance(item, bool):
                v.fail(f"unknown value {item!r}", axis_line, f"{key}.{axis}",
                       ", ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in allowed[axis]))
        parsed.append((axis, values))
    return tuple(parsed)


def _allowed_in_match(backends: dict[tuple[str, str], Backend], axes: dict[str, tuple[Any, ...]]):
    names = tuple(dict.fromkeys(backend.name for backend in backends.values()))
    return {"source": SOURCES, "backend": names, **{axis: axes[axis] for axis in AXES}}


def parse_slices(v: Validator, top: LineDict, backends, axes) -> tuple[Slice, ...]:
    """`slices: {name: {axis: values}}`; without the section, one slice holds every cell."""
    if "slices" not in top:
        return (Slice("all", (), top.line),)
    section = v.mapping(top["slices"], "slices", top.key_lines["slices"])
    if not section:
        v.fail("must name at least one slice", section.line, "slices")
    allowed = _allowed_in_match(backends, axes)
    result = []
    for name, entry in section.items():
        line = section.key_lines[name]
        match = _parse_match(v, entry, f"slices.{name}", line, allowed, empty_ok=True)
        result.append(Slice(str(name), match, line))
    return tuple(result)


def parse_rules(v: Validator, top: LineDict, backends, axes) -> tuple[Rule, ...]:
    section = top.get("expectations", LineList())
    if not isinstance(section, list):
        v.fail(f"must be a list of rules, got {_kind(section)}", top.key_lines["expectations"], "expectations")
    allowed = _allowed_in_match(backends, axes)
    rules = []
    for i, entry in enumerate(section):
        key = f"expectations[{i}]"
        entry = v.mapping(entry, key, section.item_lines[i])
        v.only_keys(entry, _RULE_FIELDS, key)
        parsed_match = _parse_match(v, entry.get("match"), f"{key}.match", entry.line, allowed)
        expect = entry.get("expect")
        if expect not in EXPECTS:
            v.fail(f"unknown value {expect!r}", entry.key_lines.get("expect", entry.line), f"{key}.expect",
                   ", ".join(EXPECTS))
        statuses = entry.get("status")
        if statuses is not None:
            statuses = tuple(statuses) if isinstance(statuses, list) else (statuses,)
            if expect == "pass":
                v.fail("a rule that expects pass cannot pin a failure status", entry.key_lines["status"], f"{key}.status")
            for status in statuses:
                if status not in FAIL_STATUSES:
                    v.fail(f"unknown status {status!r}", entry.key_lines["status"], f"{key}.status",
                           ", ".join(FAIL_STATUSES))
        error_match = entry.get("error_match")
        if error_match is not None:
            if not isinstance(error_match, str):
                v.fail("must be a regular expression string", entry.key_lines["error_match"], f"{key}.error_match")
            try:
                re.compile(error_match)
            except re.error as exc:
                v.fail(f"invalid regular expression: {exc}", entry.key_lines["error_match"], f"{key}.error_match")
        reason = entry.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            v.fail("every rule needs a reason", entry.key_lines.get("reason", entry.line), f"{key}.reason")
        capability = entry.get("compute_capability")
        if capability is not None:
            if not isinstance(capability, str) or not CAPABILITY.fullmatch(capability):
                v.fail(f"must look like '>=9.0', got {capability!r}", entry.key_lines["compute_capability"],
                       f"{key}.compute_capability", ">=, >, ==, <, <= and MAJOR.MINOR")
            if dict(parsed_match).get("device") != ("cuda",):
                v.fail("a compute_capability condition needs `device: cuda` in match",
                       entry.key_lines["compute_capability"], f"{key}.compute_capability")
        rules.append(Rule(parsed_match, expect, statuses, error_match, " ".join(reason.split()),
                          entry.line, capability))
    return tuple(rules)


# The section `update-expectations` writes at the end of `expectations` (cmd_expectations.py).
