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
from harness.environment.registered import registered_keys
from harness.config.yamlio import LineDict, LineList, load_yaml

SCHEMA_VERSION = 2
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
_TOP_KEYS = ("schema", "backends", "axes", "slices", "shapes", "tolerances", "time_limit_s", "max_recompiles",
             "memory_limit_gb", "expectations")
_SHAPE_KEYS = ("tokens", "hidden", "intermediate", "experts", "top_k", "routing")
_RULE_FIELDS = ("match", "expect", "status", "error_match", "compute_capability", "reason")
_CAPABILITY = re.compile(r"\s*(>=|<=|==|>|<)\s*(\d+)\.(\d+)\s*")


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
    op, major, minor = _CAPABILITY.fullmatch(condition).groups()
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
    if schema == 1:
        v.fail("schema 1 (one backend entry per slice of the matrix, `only:`) is no longer read: group the "
               "backends by source and move `only:` boxes to `slices:` (README, 'The matrix')",
               top.key_lines.get("schema"), "schema", str(SCHEMA_VERSION))
    if schema != SCHEMA_VERSION:
        v.fail(f"unsupported schema {schema!r}", top.key_lines.get("schema"), "schema", str(SCHEMA_VERSION))
    backends = _parse_backends(v, top, import_backends)
    shapes = _parse_shapes(v, top)
    axes = _parse_axes(v, top, shapes)
    slices = _parse_slices(v, top, backends, axes)
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
    matrix = Matrix(path, backends, axes, shapes, tolerances, float(time_limit), max_recompiles, rules, slices,
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


def _parse_backends(v: _Validator, top: LineDict, import_backends: bool) -> dict[tuple[str, str], Backend]:
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


def _transformers_names(v: _Validator, entry: Any, line: int, key: str) -> tuple[str, ...]:
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


def _check_name(v: _Validator, name: Any, line: int, key: str) -> None:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.]+", name):
        v.fail(f"backend names use letters, digits, '_' and '.' only, got {name!r}", line, key)


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


def _parse_match(v: _Validator, match: Any, key: str, line: int, allowed: dict[str, tuple[Any, ...]],
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


def _parse_slices(v: _Validator, top: LineDict, backends, axes) -> tuple[Slice, ...]:
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


def _parse_rules(v: _Validator, top: LineDict, backends, axes) -> tuple[Rule, ...]:
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
            if not isinstance(capability, str) or not _CAPABILITY.fullmatch(capability):
                v.fail(f"must look like '>=9.0', got {capability!r}", entry.key_lines["compute_capability"],
                       f"{key}.compute_capability", ">=, >, ==, <, <= and MAJOR.MINOR")
            if dict(parsed_match).get("device") != ("cuda",):
                v.fail("a compute_capability condition needs `device: cuda` in match",
                       entry.key_lines["compute_capability"], f"{key}.compute_capability")
        rules.append(Rule(parsed_match, expect, statuses, error_match, " ".join(reason.split()),
                          entry.line, capability))
    return tuple(rules)


# The section `update-expectations` writes at the end of `expectations` (cmd_expectations.py).
MEASURED_BEGIN = "# compile-matrix:measured-begin"
MEASURED_END = "# compile-matrix:measured-end"


def _measured_section(path: str) -> tuple[int, int]:
    """First and last line of the generated rules' section; (0, -1) when the file has none."""
    begin = end = None
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip().startswith(MEASURED_BEGIN):
                begin = number
            elif line.strip().startswith(MEASURED_END) and begin is not None:
                end = number
    return (begin, end) if begin is not None and end is not None else (0, -1)


def _check_rules_against_cells(v: _Validator, matrix: Matrix):
    """Every rule must decide at least one cell: one that matches none, or is overridden wherever it matches
    by later rules (the last matching rule wins), is a mistake in the file."""
    from harness.cells.cell import expand_cells  # local: cells imports this module

    matched: set[int] = set()
    decides: set[int] = set()
    overridden_by: dict[int, int] = {}
    for cell in expand_cells(matrix):
        values = cell.axis_values()
        matching = [rule for rule in matrix.rules if rule.matches(values, ignore_capability=True)]
        matched.update(rule.line for rule in matching)
        # A rule with a capability condition decides only on some devices: it never overrides for good.
        for later_index in range(len(matching) - 1, -1, -1):
            rule = matching[later_index]
            decides.add(rule.line)
            if rule.compute_capability is None:
                for earlier in matching[:later_index]:
                    overridden_by.setdefault(earlier.line, rule.line)
                break
    measured = _measured_section(matrix.path)
    for rule in matrix.rules:
        if rule.line not in matched:
            v.fail("this rule matches no cell of the matrix", rule.line, "expectations")
        # Measured rules (update-expectations) may override a docs rule everywhere: that is what they record.
        if rule.line not in decides and not measured[0] <= overridden_by[rule.line] <= measured[1]:
            v.fail(f"every cell this rule matches is decided by a later rule (line {overridden_by[rule.line]}); "
                   "the last matching rule wins: move this rule below it or narrow the later one",
                   rule.line, "expectations")
