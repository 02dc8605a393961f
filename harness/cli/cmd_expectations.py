"""`python -m harness update-expectations RESULTS...`: accept measured outcomes that contradict the docs' rules.

The hand-written rules of matrix.yaml encode the documentation. Where a measurement contradicts them (a
regression or an unexpected pass), this command writes a cell-specific rule with the measured outcome into a
generated section of the expectations list, between `# compile-matrix:measured-begin` and `-end`, and prints
what changed. Cells the results do not cover keep their generated rules; cells that agree with the docs again
lose theirs. Until someone runs it, such improvements fail `run --strict` (the update_expected.py way).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile

from harness.cells.cell import Cell, expand_cells, expectation_for
from harness.errors import EXIT_REGRESSION, HarnessError
from harness.config.matrix import AXES, Matrix
from harness.config.rules_check import MEASURED_BEGIN, MEASURED_END
from harness.config.load import load_matrix
from harness.results.observations import load_observations
from harness.results.merge import merge
from harness.results.verdict import Status, Verdict, judge

BEGIN = f"{MEASURED_BEGIN} (python -m harness update-expectations; do not edit by hand)"
END = MEASURED_END
_BEGIN_RE = re.compile(r"^[ \t]*# compile-matrix:measured-begin\b.*$", re.M)
_END_RE = re.compile(r"^[ \t]*# compile-matrix:measured-end\b.*$", re.M)


def add_parser(sub) -> None:
    """Register `update-expectations` and its options."""
    parser = sub.add_parser("update-expectations",
                            help="write measured outcomes that contradict the docs' rules into matrix.yaml")
    parser.add_argument("results", nargs="+", help="results.json (or merged) files")
    parser.add_argument("--matrix", default="matrix.yaml", help="matrix file to update (default: matrix.yaml)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the rules would change")


def run(args: argparse.Namespace) -> int:
    """0: updated (or nothing to change); 1: --check found changes; 2: bad input."""
    from harness.cli.usage import check_input_file, check_output_file

    check_input_file(args.matrix, "--matrix")
    for path in args.results:
        check_input_file(path, "results")
    if not args.check:
        check_output_file(args.matrix, "--matrix")
    matrix = load_matrix(args.matrix, import_backends=False)
    text = _read(args.matrix)
    span = _section(text, args.matrix)
    lines_of_section = (_line_of(text, span[0]), _line_of(text, span[1])) if span else (0, -1)
    generated = [r for r in matrix.rules if lines_of_section[0] <= r.line <= lines_of_section[1]]
    docs_rules = tuple(r for r in matrix.rules if r not in generated)
    cells = {cell.id: cell for cell in expand_cells(matrix)}
    kept = _existing(generated, cells, text)
    wanted, notes = _measured_rules(matrix, cells, docs_rules, args.results)
    new = {cell_id: text_ for cell_id, text_ in kept.items() if cell_id not in wanted}
    new.update({cell_id: rule for cell_id, rule in wanted.items() if rule is not None})
    for note in notes:
        print(note)
    changes = _print_changes(kept, new)
    if not changes:
        print(f"{args.matrix}: expectations already match the measurement")
        return 0
    if args.check:
        print(f"{args.matrix}: {changes} rule(s) would change: python -m harness update-expectations "
              + " ".join(args.results))
        return EXIT_REGRESSION
    _write_checked(args.matrix, _with_section(text, span, [new[k] for k in sorted(new)], args.matrix))
    print(f"{args.matrix}: {changes} generated rule(s) changed")
    return 0


def _measured_rules(matrix: Matrix, cells: dict[str, Cell], docs_rules, paths):
    """cell id -> rule text (None: the docs' rule is right); and notes about cells left alone."""
    by_id: dict[str, list] = {}
    for obs in merge(load_observations(paths)).observations():
        by_id.setdefault(obs.id, []).append(obs)
    wanted, notes = {}, []
    for cell_id, group in sorted(by_id.items()):
        cell = cells.get(cell_id)
        if cell is None:
            notes.append(f"skip {cell_id}: not a cell of {matrix.path}")
            continue
        if any(obs.cell.get("flaky") for obs in group):
            notes.append(f"skip {cell_id}: flaky, not encoded")
            continue
        outcomes = {(obs.cell["status"], (obs.cell.get("error") or {}).get("type")) for obs in group}
        if len(outcomes) > 1:
            notes.append(f"skip {cell_id}: environments disagree ({', '.join(sorted(s for s, _ in outcomes))})")
            continue
        obs = group[0]
        docs = expectation_for(cell, docs_rules)
        if judge(docs, Status(obs.cell["status"]), obs.cell.get("error")).verdict is Verdict.OK:
            wanted[cell_id] = None
        else:
            wanted[cell_id] = _rule_text(cell, obs, docs.reason)
    return wanted, notes


def _rule_text(cell: Cell, obs, docs_reason: str) -> str:
    values = cell.axis_values()
    # Every axis, so the rule names exactly this cell; the generated section ends the list, so it wins.
    match = {"source": cell.source, "backend": cell.backend, **{axis: values[axis] for axis in AXES if values[axis] is not None}}
    flow = ", ".join(f"{key}: {json.dumps(value)}" for key, value in match.items())
    status = obs.cell["status"]
    error = obs.cell.get("error") or {}
    lines = [f"- match: {{{flow}}}"]
    if status == "pass":
        lines.append("  expect: pass")
        reason = f"measured pass on {obs.env.short}; the docs' rule said: {docs_reason}"
    else:
        lines += ["  expect: fail", f"  status: [{status}]"]
        error_type = (error.get("type") or "").rsplit(".", 1)[-1]
        if error_type:
            lines.append(f"  error_match: {json.dumps(re.escape(error_type))}")
        reason = f"measured {status} on {obs.env.short}: {error_type}: {error.get('message', '')}"
    lines.append(f"  reason: {json.dumps(' '.join(reason.split())[:300])}")
    return "\n".join(lines)


def _existing(generated, cells: dict[str, Cell], text: str) -> dict[str, str]:
    """Generated rules now in the file, by the one cell each names, as their text (dedented)."""
    lines = text.splitlines()
    starts = sorted(rule.line for rule in generated)
    out = {}
    for rule in generated:
        matched = [cell_id for cell_id, cell in cells.items() if rule.matches(cell.axis_values())]
        if len(matched) != 1:
            continue  # hand-edited into something broader: dropped on rewrite
        index = starts.index(rule.line)
        end = starts[index + 1] - 1 if index + 1 < len(starts) else _end_line(lines, rule.line)
        block = [line for line in lines[rule.line - 1:end] if line.strip() and not line.strip().startswith("#")]
        indent = len(block[0]) - len(block[0].lstrip())
        out[matched[0]] = "\n".join(line[indent:] for line in block)
    return out


def _end_line(lines: list[str], after: int) -> int:
    for number in range(after, len(lines) + 1):
        if _END_RE.match(lines[number - 1]):
            return number - 1
    return len(lines)


def _print_changes(old: dict[str, str], new: dict[str, str]) -> int:
    count = 0
    for cell_id in sorted(set(old) | set(new)):
        if old.get(cell_id) == new.get(cell_id):
            continue
        count += 1
        if cell_id not in old:
            print(f"+ {cell_id}: {_summary(new[cell_id])}")
        elif cell_id not in new:
            print(f"- {cell_id}: agrees with the docs' rules again")
        else:
            print(f"~ {cell_id}: {_summary(new[cell_id])}")
    return count


def _summary(rule: str) -> str:
    return " ".join(line.strip() for line in rule.splitlines()[1:])


def _section(text: str, path: str):
    begins, ends = list(_BEGIN_RE.finditer(text)), list(_END_RE.finditer(text))
    if not begins and not ends:
        return None
    if len(begins) != 1 or len(ends) != 1 or ends[0].start() < begins[0].start():
        raise HarnessError("needs one measured-begin line followed by one measured-end line", file=path,
                           key="expectations")
    return begins[0].start(), ends[0].end()


def _with_section(text: str, span, rules: list[str], path: str) -> str:
    if span is None:
        text, at, indent = _insertion_point(text, path)
    else:
        line_start = text.rfind("\n", 0, span[0]) + 1
        indent = text[line_start:span[0]]
        at = line_start
        text = text[:line_start] + text[span[1]:].lstrip("\n")
    body = [indent + BEGIN]
    for rule in rules:
        body += [indent + line for line in rule.splitlines()]
    body.append(indent + END)
    return text[:at] + "\n".join(body) + "\n" + text[at:]


def _insertion_point(text: str, path: str) -> tuple[str, int, str]:
    """Where a new section goes: at the end of the expectations list (creating the list when needed)."""
    key = re.search(r"^expectations:[ \t]*(\[[ \t]*\])?[ \t]*(#.*)?$", text, re.M)
    if key is None:
        text = text.rstrip("\n") + "\n\nexpectations:\n"
        return text, len(text), "  "
    if key.group(1):
        text = text[:key.start()] + "expectations:" + text[key.end():]
        key = re.search(r"^expectations:.*$", text, re.M)
    after = text.find("\n", key.end())
    after = len(text) if after < 0 else after + 1
    nxt = re.compile(r"^[^\s#-]", re.M).search(text, after)  # the next top-level key (items may start at column 0)
    at = nxt.start() if nxt else len(text)
    item = re.compile(r"^([ \t]*)- ", re.M).search(text, after, at)
    indent = item.group(1) if item else "  "
    block_end = at
    while block_end > after and text[block_end - 2:block_end] == "\n\n":
        block_end -= 1  # keep the blank lines that separate the list from the next key
    if text[block_end - 1:block_end] != "\n":
        text, block_end = text[:block_end] + "\n" + text[block_end:], block_end + 1
    return text, block_end, indent


def _write_checked(path: str, text: str) -> None:
    """Write `text` over the matrix only if it still loads (a bad rule must not break the matrix)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".matrix-", suffix=".yaml", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        load_matrix(tmp, import_backends=False)
        os.replace(tmp, path)
    except HarnessError as exc:
        raise HarnessError(f"the updated expectations would not load ({exc.render()}); left unchanged",
                           file=path) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1
