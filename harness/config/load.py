"""Load matrix.yaml: read it, validate every section, type it, and check every rule against the cells."""

from __future__ import annotations

from harness.config import parse
from harness.config.matrix import Matrix
from harness.config.rules_check import check_rules_against_points
from harness.config.vocabulary import SCHEMA_VERSION
from harness.config.yamlio import load_yaml


def load_matrix(path: str, *, import_backends: bool = True) -> Matrix:
    """Read, validate and type a matrix file; raise HarnessError on the first problem."""
    data = load_yaml(path)
    v = parse.Validator(path)
    top = v.mapping(data, "(top level)", 1)
    v.only_keys(top, parse.TOP_KEYS, "(top level)")
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
    backends = parse.parse_backends(v, top, import_backends)
    shapes = parse.parse_shapes(v, top)
    axes = parse.parse_axes(v, top, shapes)
    slices = parse.parse_slices(v, top, backends, axes)
    tolerances = parse.parse_tolerances(v, top)
    time_limit = v.number(top.get("time_limit_s", 300), "time_limit_s", top.key_lines.get("time_limit_s", 1),
                          positive=True)
    max_recompiles = top.get("max_recompiles", 1)
    if not isinstance(max_recompiles, int) or isinstance(max_recompiles, bool) or max_recompiles < 0:
        v.fail(f"must be a whole number >= 0, got {max_recompiles!r}", top.key_lines.get("max_recompiles"),
               "max_recompiles")
    rules = parse.parse_rules(v, top, backends, axes)
    memory_limit = top.get("memory_limit_gb")
    if memory_limit is not None:
        memory_limit = v.number(memory_limit, "memory_limit_gb", top.key_lines["memory_limit_gb"], positive=True)
    matrix = Matrix(path, backends, axes, shapes, tolerances, float(time_limit), max_recompiles, rules, slices,
                    memory_limit)
    check_rules_against_points(v, matrix)
    return matrix
