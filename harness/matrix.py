"""Load and validate matrix.yaml into a typed Matrix; every mistake is one HarnessError."""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import re
from dataclasses import dataclass
from typing import Any, Callable

from harness.errors import HarnessError
from harness.yamlio import LineDict, LineList, load_yaml

SCHEMA_VERSION = 1
MODES = ("uncompiled", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")
DTYPES = ("bfloat16", "float16", "float32")
DEVICES = ("cpu", "cuda")
ROUTINGS = ("uniform", "skewed")
SOURCES = ("reference", "transformers", "user")
EXPECTS = ("pass", "fail", "observe")  # observe: no documented claim, report what happens
FAIL_STATUSES = ("compile_error", "runtime_error", "mismatch", "crash", "timeout")
SCOPES = ("kernel", "model")
PHASES = ("inference", "training")
AXES = ("mode", "dtype", "fullgraph", "device", "shape", "layout", "scope", "phase")
# Axes a matrix may leave out, with the value they then take.
OPTIONAL_AXES = {"layout": ("default",), "scope": ("kernel",), "phase": ("inference",)}
RULE_KEYS = ("source", "backend") + AXES
_TOP_KEYS = ("schema", "backends", "axes", "shapes", "tolerances", "time_limit_s", "max_recompiles",
             "memory_limit_gb", "expectations")
_SHAPE_KEYS = ("tokens", "hidden", "intermediate", "experts", "top_k", "routing")
_RULE_FIELDS = ("match", "expect", "status", "error_match", "compute_capability", "reason")
_CAPABILITY = re.compile(r"\s*(>=|<=|==|>|<)\s*(\d+)\.(\d+)\s*")


@dataclass(frozen=True)
class Backend:
    """One backend under test: its name, where it comes from, its dotted implementation path, and axis limits."""

    name: str
    source: str
    impl: str
    only: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # (axis, allowed values): cells outside are not made

    def admits(self, values: dict[str, Any]) -> bool:
        """True when the backend runs on a cell with these axis values."""
        return all(values.get(axis) in allowed for axis, allowed in self.only)


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

    @property
    def specificity(self) -> int:
        """How many axes (and conditions) the rule names: the most specific matching rule wins."""
        return len(self.match) + (self.compute_capability is not None)

    def matches(self, values: dict[str, Any], capability: tuple[int, int] | None = None,
                ignore_capability: bool = False) -> bool:
        """True when every named axis admits the cell's value and the device meets the capability condition."""
        if not all(values.get(axis) in allowed for axis, allowed in self.match):
            return False
        if self.compute_capability is None or ignore_capability:
            return True
        return capability is not None and capability_satisfies(capability, self.compute_capability)

    def same_claim(self, other: "Rule") -> bool:
        """True when two rules expect the same thing, or hold on different devices (a tie is then harmless)."""
        if self.compute_capability != other.compute_capability:
            return True
        return (self.expect, self.statuses, self.error_match) == (other.expect, other.statuses, other.error_match)


def capability_satisfies(capability: tuple[int, int], condition: str) -> bool:
    """Whether a (major, minor) compute capability meets a condition such as '>=9.0'."""
    op, major, minor = _CAPABILITY.fullmatch(condition).groups()
    wanted = (int(major), int(minor))
    return {">=": capability >= wanted, "<=": capability <= wanted, "==": capability == wanted,
            ">": capability > wanted, "<": capability < wanted}[op]


@dataclass(frozen=True)
class Matrix:
    """A validated matrix.yaml."""

    path: str
    backends: dict[str, Backend]
    axes: dict[str, tuple[Any, ...]]
    shapes: dict[str, Shape]
    tolerances: dict[str, float]
    time_limit_s: float
    max_recompiles: int
    rules: tuple[Rule, ...]
    memory_limit_gb: float | None = None  # address-space cap of the executor (CPU-only cells)


def load_matrix(path: str, *, import_backends: bool = True) -> Matrix:
    """Read, validate and type a matrix file; raise HarnessError on the first problem."""
    data = load_yaml(path)
    v = _Validator(path)
    top = v.mapping(data, "(top level)", 1)
    v.only_keys(top, _TOP_KEYS, "(top level)")
    for required in ("backends", "axes", "shapes", "tolerances"):
        if required not in top:
            v.fail("missing required key", top.line, required)
    schema = top.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        v.fail(f"unsupported schema {schema!r}", top.key_lines.get("schema"), "schema", str(SCHEMA_VERSION))
    backends = _parse_backends(v, top, import_backends)
    shapes = _parse_shapes(v, top)
    axes = _parse_axes(v, top, shapes)
    backends = _parse_backend_limits(v, top, backends, axes)
    tolerances = _parse_tolerances(v, top)
    time_limit = v.number(top.get("time_limit_s", 300), "time_limit_s", top.key_lines.get("time_limit_s", 1),
                          positive=True)
    max_recompiles = top.get("max_recompiles", 1)
    if not isinstance(max_recompiles, int) or isinstance(max_recompiles, bool) or max_recompiles < 0:
        v.fail(f"must be a whole number >= 0, got {max_recompiles!r}", top.key_lines.get("max_recompiles"),
               "max_recompiles")
    rules = _parse_rules(v, top, backends, axes)
    memory_limit = top.get("memory_limit_gb")
    if memory_limit is not None:
        memory_limit = v.number(memory_limit, "memory_limit_gb", top.key_lines["memory_limit_gb"], positive=True)
    matrix = Matrix(path, backends, axes, shapes, tolerances, float(time_limit), max_recompiles, rules,
                    memory_limit)
    _check_rules_against_cells(v, matrix)
    return matrix


def resolve_impl(impl: str) -> Callable:
    """Import `package.module:function` and return the callable (raises ImportError/AttributeError/TypeError)."""
    module_name, _, attr = impl.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{impl} is a {type(obj).__name__}, not a callable")
    return obj


class _Validator:
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


def _parse_backends(v: _Validator, top: LineDict, import_backends: bool) -> dict[str, Backend]:
    section = v.mapping(top["backends"], "backends", top.key_lines["backends"])
    if not section:
        v.fail("must name at least one backend", section.line, "backends")
    result = {}
    for name, entry in section.items():
        line = section.key_lines[name]
        key = f"backends.{name}"
        if not re.fullmatch(r"[A-Za-z0-9_.]+", str(name)):
            v.fail("backend names use letters, digits, '_' and '.' only", line, key)
        if isinstance(entry, str):
            entry_map = {"impl": entry, "source": "user"}
        else:
            entry_map = v.mapping(entry, key, line)
            v.only_keys(entry_map, ("impl", "source", "only"), key)
        impl, source = entry_map.get("impl"), entry_map.get("source", "user")
        if source not in SOURCES:
            v.fail(f"unknown source {source!r}", line, f"{key}.source", ", ".join(SOURCES))
        if not isinstance(impl, str) or not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", impl):
            v.fail(f"impl must be a dotted path 'package.module:function', got {impl!r}", line, f"{key}.impl")
        if import_backends:
            _check_importable(v, impl, line, f"{key}.impl")
        result[str(name)] = Backend(str(name), source, impl)
    return result


def _parse_backend_limits(v: _Validator, top: LineDict, backends: dict[str, Backend],
                          axes: dict[str, tuple[Any, ...]]) -> dict[str, Backend]:
    """Apply each backend's optional `only: {axis: [values]}`; values must be on the axis."""
    section = top["backends"]
    result = {}
    for name, backend in backends.items():
        entry = section[name]
        only = entry.get("only") if isinstance(entry, dict) else None
        if only is None:
            result[name] = backend
            continue
        key = f"backends.{name}.only"
        only = v.mapping(only, key, entry.key_lines["only"])
        limits = []
        for axis, value in only.items():
            if axis not in AXES:
                v.fail("unknown axis", only.key_lines[axis], f"{key}.{axis}", ", ".join(AXES))
            values = tuple(value) if isinstance(value, list) else (value,)
            for item in values:
                if item not in axes[axis] or (axis == "fullgraph") != isinstance(item, bool):
                    v.fail(f"value {item!r} is not on axis {axis}", only.key_lines[axis], f"{key}.{axis}",
                           ", ".join(map(str, axes[axis])))
            limits.append((axis, values))
        result[name] = Backend(backend.name, backend.source, backend.impl, tuple(limits))
    return result


def _check_importable(v: _Validator, impl: str, line: int, key: str):
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


def _parse_shapes(v: _Validator, top: LineDict) -> dict[str, Shape]:
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


def _parse_axes(v: _Validator, top: LineDict, shapes: dict[str, Shape]) -> dict[str, tuple[Any, ...]]:
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


def _parse_tolerances(v: _Validator, top: LineDict) -> dict[str, float]:
    section = v.mapping(top["tolerances"], "tolerances", top.key_lines["tolerances"])
    v.only_keys(section, DTYPES, "tolerances")
    result = {}
    for dtype, value in section.items():
        result[dtype] = v.number(value, f"tolerances.{dtype}", section.key_lines[dtype], positive=True)
    return result


def _parse_rules(v: _Validator, top: LineDict, backends: dict[str, Backend],
                 axes: dict[str, tuple[Any, ...]]) -> tuple[Rule, ...]:
    section = top.get("expectations", LineList())
    if not isinstance(section, list):
        v.fail(f"must be a list of rules, got {_kind(section)}", top.key_lines["expectations"], "expectations")
    allowed = {"source": SOURCES, "backend": tuple(backends), **{axis: axes[axis] for axis in AXES}}
    rules = []
    for i, entry in enumerate(section):
        key = f"expectations[{i}]"
        entry = v.mapping(entry, key, section.item_lines[i])
        v.only_keys(entry, _RULE_FIELDS, key)
        match = v.mapping(entry.get("match"), f"{key}.match", entry.line)
        if not match:
            v.fail("must name at least one axis", match.line, f"{key}.match")
        parsed_match = []
        for axis, value in match.items():
            line = match.key_lines[axis]
            if axis not in RULE_KEYS:
                v.fail("unknown axis", line, f"{key}.match.{axis}", ", ".join(RULE_KEYS))
            values = tuple(value) if isinstance(value, list) else (value,)
            for item in values:
                if item not in allowed[axis] or (axis == "fullgraph") != isinstance(item, bool):
                    v.fail(f"unknown value {item!r}", line, f"{key}.match.{axis}",
                           ", ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in allowed[axis]))
            parsed_match.append((axis, values))
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
            if not isinstance(capability, str) or not _CAPABILITY.fullmatch(capability):
                v.fail(f"must look like '>=9.0', got {capability!r}", entry.key_lines["compute_capability"],
                       f"{key}.compute_capability", ">=, >, ==, <, <= and MAJOR.MINOR")
            if dict(parsed_match).get("device") != ("cuda",):
                v.fail("a compute_capability condition needs `device: cuda` in match",
                       entry.key_lines["compute_capability"], f"{key}.compute_capability")
        rules.append(Rule(tuple(parsed_match), expect, statuses, error_match, " ".join(reason.split()),
                          entry.line, capability))
    return tuple(rules)


def _check_rules_against_cells(v: _Validator, matrix: Matrix):
    from harness.cells import expand_cells  # local: cells imports this module

    used: set[int] = set()
    for cell in expand_cells(matrix):
        values = cell.axis_values()
        matching = [rule for rule in matrix.rules if rule.matches(values, ignore_capability=True)]
        if not matching:
            continue
        top = max(rule.specificity for rule in matching)
        winners = [rule for rule in matching if rule.specificity == top]
        for other in winners[1:]:
            if not other.same_claim(winners[0]):
                v.fail(f"contradicts the rule at line {winners[0].line} for cell {cell.id} "
                       "(equally specific, different expectation)", other.line, "expectations")
        used.update(rule.line for rule in matching)
    for rule in matrix.rules:
        if rule.line not in used:
            v.fail("this rule matches no cell of the matrix", rule.line, "expectations")
