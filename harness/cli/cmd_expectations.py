"""`python -m harness update-expectations RESULTS...`: accept measured outcomes that contradict the docs' rules.

The hand-written rules of matrix.yaml encode the documentation. Where a measurement contradicts them (a
regression or an unexpected pass), this command writes rules with the measured outcome (one per claim: the
fewest boxes of axis values that cover exactly the cells with that outcome and error) into a generated section of the expectations list, between `# compile-matrix:measured-begin` and `-end`, and prints
what changed. Cells the results do not cover keep their generated rules; cells that agree with the docs again
lose theirs. Until someone runs it, such improvements fail `run --strict` (the update_expected.py way).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from dataclasses import dataclass

from harness.cells.cell import Cell, expand_cells, expectation_for
from harness.cells.rule_boxes import boxes
from harness.errors import EXIT_REGRESSION, HarnessError
from harness.config.matrix import AXES, Matrix
from harness.config.rules_check import MEASURED_BEGIN, MEASURED_END
from harness.config.load import load_matrix
from harness.results.observations import load_observations
from harness.results.merge import is_flaky, merge
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
    kept = _existing_claims(generated, cells)
    wanted, notes = _measured_claims(matrix, cells, docs_rules, args.results)
    claims = {cell_id: claim for cell_id, claim in kept.items() if cell_id not in wanted}
    claims.update({cell_id: claim for cell_id, claim in wanted.items() if claim is not None})
    old = {_rule_text(_match_of(rule), _Claim.of(rule)): _count(rule, cells) for rule in generated}
    new = _rules(claims, cells)
    for note in notes:
        print(note)
    changes = _print_changes(old, new)
    if not changes:
        print(f"{args.matrix}: expectations already match the measurement")
        return 0
    if args.check:
        print(f"{args.matrix}: {changes} rule(s) would change: python -m harness update-expectations "
              + " ".join(args.results))
        return EXIT_REGRESSION
    _write_checked(args.matrix, _with_section(text, span, list(new), args.matrix))
    print(f"{args.matrix}: {changes} generated rule(s) changed")
    return 0


@dataclass(frozen=True)
class _Claim:
    """What a generated rule says about its cells: the measured outcome, and why."""

    expect: str
    statuses: tuple[str, ...] | None
    error_match: str | None
    reason: str

    @classmethod
    def of(cls, rule) -> _Claim:
        """The claim of a rule already in the generated section."""
        return cls(rule.expect, rule.statuses, rule.error_match, rule.reason)


def _measured_claims(matrix: Matrix, cells: dict[str, Cell], docs_rules, paths):
    """cell id -> claim (None: the docs' rule is right); and notes about cells left alone."""
    by_id: dict[str, list] = {}
    for obs in merge(load_observations(paths)).observations():
        by_id.setdefault(obs.id, []).append(obs)
    wanted, notes = {}, []
    for cell_id, group in sorted(by_id.items()):
        cell = cells.get(cell_id)
        if cell is None:
            notes.append(f"skip {cell_id}: not a cell of {matrix.path}")
            continue
        if any(is_flaky(obs.cell) for obs in group):
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
            wanted[cell_id] = _claim(obs, docs.reason)
    return wanted, notes


def _claim(obs, docs_reason: str) -> _Claim:
    """The measured outcome of one observation as a claim; the reason names the environment, not the cell."""
    status, error = obs.cell["status"], obs.cell.get("error") or {}
    if status == "pass":
        return _Claim("pass", None, None, f"measured pass on {obs.env.short}; the docs' rule said: {docs_reason}")
    error_type = (error.get("type") or "").rsplit(".", 1)[-1]
    reason = f"measured {status} on {obs.env.short}: {error_type}: {error.get('message', '')}"
    return _Claim("fail", (status,), re.escape(error_type) if error_type else None, " ".join(reason.split())[:300])


def _rules(claims: dict[str, _Claim], cells: dict[str, Cell]) -> dict[str, int]:
    """One rule per claim and backend, as few as cover exactly its cells: rule text -> cells it decides.

    Cells of one backend with the same outcome and error type share a claim even where the reasons' messages
    differ (numbers, shapes): the rule keeps the first cell's reason.
    """
    universe = list(cells.values())
    groups: dict[tuple, list[str]] = {}
    for cell_id in sorted(claims, key=list(cells).index):
        claim, cell = claims[cell_id], cells[cell_id]
        groups.setdefault((cell.source, cell.backend, claim.expect, claim.statuses, claim.error_match), []).append(
            cell_id)
    out = {}
    for ids in groups.values():
        claim = claims[ids[0]]
        for match in boxes([cells[i] for i in ids], universe):
            out[_rule_text(match, claim)] = sum(all(getattr(cells[i], a) in v for a, v in match.items()) for i in ids)
    return out


def _match_of(rule) -> dict[str, tuple]:
    return dict(rule.match)


def _count(rule, cells: dict[str, Cell]) -> int:
    return sum(rule.matches(cell.axis_values(), ignore_capability=True) for cell in cells.values())


def _rule_text(match: dict[str, tuple], claim: _Claim) -> str:
    order = ("source", "backend") + AXES
    flow = ", ".join(f"{key}: {json.dumps(match[key][0] if len(match[key]) == 1 else list(match[key]))}"
                     for key in order if key in match)
    lines = [f"- match: {{{flow}}}", f"  expect: {claim.expect}"]
    if claim.statuses:
        lines.append(f"  status: [{', '.join(claim.statuses)}]")
    if claim.error_match:
        lines.append(f"  error_match: {json.dumps(claim.error_match)}")
    lines.append(f"  reason: {json.dumps(claim.reason)}")
    return "\n".join(lines)


def _existing_claims(generated, cells: dict[str, Cell]) -> dict[str, _Claim]:
    """The claim every cell gets from the generated rules now in the file."""
    out = {}
    for rule in generated:
        for cell_id, cell in cells.items():
            if rule.matches(cell.axis_values(), ignore_capability=True):
                out[cell_id] = _Claim.of(rule)
    return out


def _print_changes(old: dict[str, int], new: dict[str, int]) -> int:
    """Print the rules that go and come (with how many cells each decides); return how many changed."""
    gone, come = [r for r in old if r not in new], [r for r in new if r not in old]
    for rule in gone:
        print(f"- {_summary(rule)} ({old[rule]} cell(s))")
    for rule in come:
        print(f"+ {_summary(rule)} ({new[rule]} cell(s))")
    return len(gone) + len(come)


def _summary(rule: str) -> str:
    return " ".join(line.strip().lstrip("- ") for line in rule.splitlines())


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
