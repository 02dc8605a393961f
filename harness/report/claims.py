"""The documentation's support table as claims, and how each claim compares with the measured table."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError
from harness.config.matrix import DTYPES
from harness.report.docs_table import DocsTable
from harness.report.row_summary import COMPILED_MODES, dtypes_text, modes_text

DEFAULT_CLAIMS = os.path.join("reports", "docs_claims.md")
_HEADER = ("implementation", "compilation modes", "dtypes", "fullgraph=true")


@dataclass(frozen=True)
class Claim:
    """One row of the documentation's table."""

    label: str
    modes: tuple[str, ...]
    dtypes: tuple[str, ...]
    fullgraph: str  # Yes | No


@dataclass(frozen=True)
class Check:
    """One claim (row and column) against what was measured on one platform (CPU, CUDA sm 9.0, ...)."""

    label: str
    platform: str
    aspect: str  # modes | dtypes | fullgraph=True
    claim: str
    measured: str
    agrees: bool | None  # None: nothing measured for this row there
    detail: str  # what disagrees: "documented, fails: ..." / "works, not documented: ..."

    @property
    def verdict(self) -> str:
        """`holds`, `wrong` (something documented fails), `stale` (more works than documented), `not measured`."""
        if self.agrees is None:
            return "not measured"
        if self.agrees:
            return "holds"
        return "wrong" if "documented, fails" in self.detail or self.aspect == "fullgraph=True" else "stale"

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {**self.__dict__, "verdict": self.verdict}


def read_claims(path: str) -> list[Claim]:
    """Parse the first support table (Implementation | compilation modes | dtypes | fullgraph=True) in a page."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise HarnessError(f"cannot read the docs claims: {exc.strerror}", file=path) from None
    for i, line in enumerate(lines):
        if tuple(_cells(line)) == _HEADER:
            return [_claim(path, i + 3 + n, cells) for n, cells in enumerate(_table_body(lines[i + 2:]))]
    raise HarnessError("no table with the header | Implementation | compilation modes | dtypes | fullgraph=True |",
                       file=path)


def compare(claims: list[Claim], table: DocsTable) -> list[Check]:
    """Each documented row's modes, dtypes and fullgraph answer against the measured row of the same
    implementation, per platform."""
    checks = []
    for claim in claims:
        row = next((row for row in table.rows if row.label == claim.label), None)
        if row is None or not row.platforms:
            for aspect, text in (("modes", modes_text(claim.modes)), ("dtypes", dtypes_text(claim.dtypes)),
                                 ("fullgraph=True", claim.fullgraph)):
                checks.append(Check(claim.label, "-", aspect, text, "not measured", None,
                                    f"no {table.source} cell of this row was measured"))
            continue
        for name, s in row.platforms.items():
            checks.append(_set_check(claim.label, name, "modes", claim.modes, s.modes, s.tried_modes, modes_text))
            checks.append(_set_check(claim.label, name, "dtypes", claim.dtypes, s.dtypes, s.tried_dtypes, dtypes_text))
            agrees = claim.fullgraph == s.fullgraph
            checks.append(Check(claim.label, name, "fullgraph=True", claim.fullgraph, s.fullgraph, agrees,
                                "" if agrees else f"docs say {claim.fullgraph}, measured {s.fullgraph}"))
    return checks


def _set_check(label, platform, aspect, claimed, measured, tried, text) -> Check:
    failing = [v for v in claimed if v not in measured and v in tried]
    untried = [v for v in claimed if v not in tried]
    extra = [v for v in measured if v not in claimed]
    detail = []
    if failing:
        detail.append("documented, fails: " + ", ".join(_show(v) for v in failing))
    if extra:
        detail.append("works, not documented: " + ", ".join(_show(v) for v in extra))
    if untried:
        detail.append("documented, not measured: " + ", ".join(_show(v) for v in untried))
    agrees = None if untried and not failing and not extra else not (failing or extra)
    return Check(label, platform, aspect, text(claimed), text(measured), agrees, "; ".join(detail))


def _show(value: str) -> str:
    return "None" if value == "default" else value


def _cells(line: str) -> list[str]:
    line = line.strip()
    if not line.startswith("|"):
        return []
    return [cell.strip().strip("`").strip().lower() for cell in line.strip("|").split("|")]


def _table_body(lines: list[str]):
    for line in lines:
        if not line.strip().startswith("|"):
            return
        yield [cell.strip() for cell in line.strip().strip("|").split("|")]


def _claim(path: str, line: int, cells: list[str]) -> Claim:
    if len(cells) != 4:
        raise HarnessError(f"a row of the support table needs 4 cells, got {len(cells)}", file=path, line=line)
    label, modes, dtypes, fullgraph = (re.sub(r"<sup>.*?</sup>|<[^>]+>|[`*]", "", cell).strip()
                                        for cell in cells)
    parsed_modes = COMPILED_MODES if modes.lower() == "all" else tuple(
        "default" if m.strip() == "None" else m.strip() for m in modes.split(","))
    parsed_dtypes = DTYPES if dtypes.lower() == "all" else tuple(d.strip() for d in dtypes.split(","))
    for mode in parsed_modes:
        if mode not in COMPILED_MODES:
            raise HarnessError(f"unknown compilation mode {mode!r}", file=path, line=line,
                               allowed="all, None, " + ", ".join(COMPILED_MODES[1:]))
    for dtype in parsed_dtypes:
        if dtype not in DTYPES:
            raise HarnessError(f"unknown dtype {dtype!r}", file=path, line=line, allowed=", ".join(DTYPES))
    answer = fullgraph.split()[0].capitalize() if fullgraph else ""
    if answer not in ("Yes", "No"):
        raise HarnessError(f"fullgraph=True must be Yes or No, got {fullgraph!r}", file=path, line=line)
    ordered_modes = tuple(m for m in COMPILED_MODES if m in parsed_modes)
    ordered_dtypes = tuple(d for d in DTYPES if d in parsed_dtypes)
    return Claim(label, ordered_modes, ordered_dtypes, answer)
