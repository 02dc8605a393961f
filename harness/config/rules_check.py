"""Rules against the matrix: every rule must decide at least one cell (the last matching rule wins)."""

from __future__ import annotations

from harness.config.matrix import AXES, Matrix, admitted_points


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


def check_rules_against_points(v, matrix: Matrix) -> None:
    """Every rule must decide at least one cell: one that matches none, or is overridden wherever it matches
    by later rules (the last matching rule wins), is a mistake in the file."""
    matched: set[int] = set()
    decides: set[int] = set()
    overridden_by: dict[int, int] = {}
    for backend, point in admitted_points(matrix):
        values = {"source": backend.source, "backend": backend.name, **dict(zip(AXES, point))}
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
