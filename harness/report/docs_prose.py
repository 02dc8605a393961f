"""Sentences of a docs page, outside the generated table, that the measured table contradicts.

`docs --update` rewrites only the lines between the markers; the prose around them (the notes under the
table, the compile example) can still say the old thing. Three kinds of statement are recognised, each tied
to the implementation the sentence names: "not compatible with CUDA graphs", "only supports <dtype>", and
"not compatible with full graph compilation (fullgraph=True)".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.report.docs_table import DocsTable
from harness.config.matrix import CUDAGRAPH_MODES, DTYPES
from harness.environment.registered import DOCUMENTED

_CUDA_GRAPHS = re.compile(r"not (?:be )?compatible with CUDA graphs|not support[^.]*CUDA graphs", re.I)
_ONLY_DTYPE = re.compile(r"only supports? (bfloat16|float16|float32)", re.I)
_NO_FULLGRAPH = re.compile(r"not (?:be )?compatible with full ?graph|fullgraph=True\)? is not supported", re.I)


@dataclass(frozen=True)
class Contradiction:
    """A sentence of the page (1-based line) and what the measured table says against it."""

    line: int
    sentence: str
    why: str

    def render(self, page: str) -> str:
        """One line for the terminal: where, what the page says, what was measured."""
        return f"{page}:{self.line}: \"{_short(self.sentence)}\" — {self.why}"


def contradictions(text: str, block_span: tuple[int, int], table: DocsTable) -> list[Contradiction]:
    """Statements outside `block_span` (character offsets of the generated block) that the table contradicts.

    A paragraph or list item is one statement about the one documented implementation it names ("it" in its
    second sentence still means that implementation); one naming several is left alone.
    """
    found = []
    for start, paragraph in _paragraphs(text):
        if block_span[0] <= start < block_span[1]:
            continue
        named = [name for name in DOCUMENTED if re.search(rf"\b{name}\b", paragraph)]
        if len(named) != 1:
            continue
        line = text.count("\n", 0, start) + 1
        found += [Contradiction(line, paragraph, why) for why in _against(paragraph, named[0], table)]
    return found


def _against(sentence: str, backend: str, table: DocsTable) -> list[str]:
    rows = [row for row in table.rows if row.backend == backend]
    out = []
    if _CUDA_GRAPHS.search(sentence):
        for row in rows:
            for platform, s in row.platforms.items():
                working = [m for m in CUDAGRAPH_MODES if m in s.modes]
                if working and platform.startswith("CUDA"):
                    out.append(f"measured: {row.label} works with {', '.join(working)} (CUDA graphs) on {platform}")
    if match := _ONLY_DTYPE.search(sentence):
        only = match.group(1).lower()
        for row in rows:
            others = sorted({d for s in row.platforms.values() for d in s.dtypes if d != only}, key=DTYPES.index)
            if others:
                out.append(f"measured: {row.label} compiles and passes with {', '.join(others)} too")
    if _NO_FULLGRAPH.search(sentence):
        for row in rows:
            yes = [platform for platform, s in row.platforms.items() if s.fullgraph == "Yes"]
            if yes:
                out.append(f"measured: {row.label} passes with fullgraph=True on {', '.join(yes)}")
    return out


def _paragraphs(text: str):
    """(offset, text) per paragraph or list item outside code blocks, with Markdown emphasis removed."""
    offset, in_code = 0, False
    current, start = [], 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("```"):
            in_code = not in_code
        boundary = in_code or not stripped or stripped.startswith(("- ", "* ", "#", "|", "<!--", "```"))
        if boundary and current:
            yield start, " ".join(" ".join(current).replace("`", "").replace("*", "").split())
            current = []
        if not in_code and stripped and not stripped.startswith(("#", "|", "<!--", "```")):
            if not current:
                start = offset
            current.append(stripped.lstrip("-*> ").strip())
        offset += len(line)
    if current:
        yield start, " ".join(" ".join(current).replace("`", "").replace("*", "").split())


def _short(sentence: str, width: int = 110) -> str:
    return sentence if len(sentence) <= width else sentence[: width - 1] + "…"
