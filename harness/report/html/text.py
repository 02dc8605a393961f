"""Escaping and small inline fragments shared by the HTML report's sections."""

from __future__ import annotations

import html
import re
from typing import Any


def esc(value: Any) -> str:
    """HTML-escape any value (None is empty), quotes included, so it is safe in text and in attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def inline(text: str) -> str:
    """Escape, then render the Markdown the notes use: `code` and _emphasis_ around the whole line."""
    escaped = esc(text)
    escaped = re.sub(r"`([^`]*)`", r"<code>\1</code>", escaped)
    if escaped.startswith("_") and escaped.endswith("_"):
        escaped = f"<em>{escaped[1:-1]}</em>"
    return escaped.replace("\\|", "|")


def plural(n: int, word: str) -> str:
    """`1 cell`, `2 cells`."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def short(text: Any, limit: int = 220) -> str:
    """One line (whitespace collapsed), cut to `limit` characters with an ellipsis."""
    line = " ".join(str(text or "").split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
