"""A short `-k` expression that selects exactly a group of cells, for the HTML report's rerun commands.

`harness run -k` matches each word as a case-insensitive substring of the cell id (pytest's expression syntax).
The words tried are runs of consecutive `-`-separated parts of the ids; a greedy search builds `A and B` clauses
(two `not C` allowed per clause), joined with `or`, and gives up when the expression would get long.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"^[A-Za-z_][\w.+:-]*$")  # an identifier of pytest's -k grammar
_RESERVED = ("and", "or", "not", "true", "false", "none")


def keyword_expression(ids: list[str], known_ids: set[str], natural: set[str] = frozenset(), clauses: int = 3,
                       terms: int = 4) -> str | None:
    """An expression selecting exactly `ids` among `known_ids` (plus `ids`), or None when none is that short;
    words in `natural` (axis values, say `reduce-overhead`) and single id parts are preferred to other runs."""
    known = sorted({i.lower() for i in known_ids} | {i.lower() for i in ids})
    position = {cell_id: n for n, cell_id in enumerate(known)}
    group = _mask(position, {i.lower() for i in ids})
    runs = sorted({run for cell_id in known for run in _runs(cell_id)})
    bits = {run: _mask(position, {cell_id for cell_id in known if run in cell_id}) for run in runs}
    everything = (1 << len(known)) - 1
    out: list[str] = []
    remaining = group
    while remaining:
        if len(out) == clauses:
            return None
        plain = {run for run in runs if "-" not in run or run in {n.lower() for n in natural}}
        found = _clause(runs, bits, group, remaining, everything, terms, plain)
        if found is None:
            return None
        words, selected = found
        out.append(" and ".join(words))
        remaining &= ~selected
    return " or ".join(out)


def matches(expression: str, cell_id: str) -> bool:
    """Whether an expression of the form this module writes (`A and not B or C`) selects a cell id."""
    lowered = cell_id.lower()
    for clause in expression.split(" or "):
        ok = True
        for word in clause.split(" and "):
            negated = word.startswith("not ")
            found = word.removeprefix("not ").lower() in lowered
            ok = ok and (found != negated)
        if ok:
            return True
    return False


def _clause(runs, bits, group, remaining, everything, terms, plain, beam=12):
    """Beam search over clauses of up to `terms` words: the one letting in no unwanted cell that covers most of
    `remaining`; (words, the cells of `remaining` it selects), or None."""
    states = [((), everything)]
    best = None
    for _ in range(terms):
        grown = {}
        for words, selected in states:
            if not selected & ~group:
                continue  # finished: more words would only select less
            negated = sum(1 for w in words if w.startswith("not ")) >= 2
            for run in runs:
                for word, mask in ((run, bits[run]), (f"not {run}", everything & ~bits[run])):
                    if word.startswith("not ") and negated:
                        continue
                    new = selected & mask
                    if not new & remaining or new == selected or word in words:
                        continue
                    key = tuple(sorted(words + (word,)))
                    grown.setdefault(key, (words + (word,), new))
        for words, new in grown.values():
            score = _score(words, new & remaining, plain)
            positive = any(not w.startswith("not ") for w in words)  # `not X` alone would select the world
            if positive and not new & ~group and (best is None or score > best[2]):
                best = (list(words), new & remaining, score)
        states = sorted(grown.values(), key=lambda s: (-_count(s[1] & remaining) * _count(s[1] & group)
                                                       / max(1, _count(s[1])), -_score(s[0], 0, plain)[1]))[:beam]
    return best[:2] if best else None


def _score(words, covered, plain) -> tuple:
    """More cells covered, then fewer odd words (runs across axis values), fewer words, shorter words."""
    odd = sum(1 for w in words if w.removeprefix("not ") not in plain)
    return (_count(covered), -odd, -len(words), -sum(map(len, words)))


def _mask(position: dict[str, int], chosen: set[str]) -> int:
    mask = 0
    for cell_id in chosen:
        mask |= 1 << position[cell_id]
    return mask


def _count(mask: int) -> int:
    return bin(mask).count("1")


def _runs(cell_id: str) -> set[str]:
    """Words to try: runs of 1 to 3 id parts, at least 3 characters (shorter ones match by accident)."""
    parts = cell_id.split("-")
    runs = {"-".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, min(len(parts), i + 3) + 1)}
    return {run for run in runs if len(run) >= 3 and _WORD.match(run) and run not in _RESERVED}
