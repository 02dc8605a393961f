"""The generated block of a Markdown page: between `<!-- compile-matrix:begin -->` and `<!-- compile-matrix:end -->`."""

from __future__ import annotations

from harness.errors import HarnessError

BEGIN = "<!-- compile-matrix:begin -->"
END = "<!-- compile-matrix:end -->"


def read_page(path: str) -> str:
    """The page's text; a missing or unreadable page is a HarnessError naming it."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise HarnessError(f"cannot read the page: {exc.strerror}", file=path) from None


def current_block(text: str, path: str) -> str:
    """What the page has between the markers (without the markers)."""
    start, end = _span(text, path)
    return text[start:end]


def block_span(text: str, path: str) -> tuple[int, int]:
    """Character offsets of the text between the markers."""
    return _span(text, path)


def replace_block(text: str, block: str, path: str) -> str:
    """The page with the text between the markers replaced by `block`, framed as the old block was (a blank
    line or not), so that the diff shows only the table's own lines."""
    start, end = _span(text, path)
    old = text[start:end]
    lead = old[: len(old) - len(old.lstrip())] or "\n"
    trail = old[len(old.rstrip()):] or "\n"
    if not old.strip():
        lead, trail = "\n", "\n"
    return text[:start] + lead + block.strip("\n") + trail + text[end:]


def same_block(a: str, b: str) -> bool:
    """True when two blocks differ at most in surrounding blank lines and trailing spaces."""
    return _normal(a) == _normal(b)


def _normal(block: str) -> list[str]:
    return [line.rstrip() for line in block.strip("\n").splitlines()]


def _span(text: str, path: str) -> tuple[int, int]:
    for marker in (BEGIN, END):
        count = text.count(marker)
        if count != 1:
            raise HarnessError(f"needs exactly one {marker} line, found {count}", file=path)
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    if end < start:
        raise HarnessError(f"{END} comes before {BEGIN}", file=path, line=text[:end].count("\n") + 1)
    return start, end
