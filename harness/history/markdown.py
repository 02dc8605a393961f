"""The history as Markdown: per environment the change points, the release x cell table, and each row's spans."""

from __future__ import annotations

from harness.history.table import NOT_APPLICABLE, History, first_change, grouped_changes

SYMBOLS = {"pass": "✓", "compile_error": "C", "runtime_error": "R", "mismatch": "M", "crash": "X", "timeout": "T",
           NOT_APPLICABLE: "·", "skipped": "·"}
LEGEND = ("✓ pass · C compile_error · R runtime_error · M mismatch · X crash · T timeout · `·` not applicable "
          "(the release lacks the family or backend, or the pair did not run); **bold**: the state (status or "
          "failure reason) changed in this release")


def change_lines(history: History) -> list[str]:
    """The short list: 'transformers X.Y.Z: grouped_mm, float16, default: compile_error -> pass — <root cause>'."""
    lines = []
    for release, before, after, cause, labels in grouped_changes(history):
        rows = "; ".join(labels) if len(labels) <= 4 else f"{'; '.join(labels[:4])} (+{len(labels) - 4} more)"
        lines.append(f"transformers {release}: {rows}: {before} -> {after} — {cause or '(no message)'}")
    return lines


def spans(history: History, cell_id: str) -> list[tuple[str, str, str, str]]:
    """(first release, last release, status, root cause) of each run of releases with one state."""
    found: list[list[str]] = []
    for release in history.releases:
        entry = history.entries[cell_id][release]
        if found and history.entries[cell_id][found[-1][0]].state == entry.state:
            found[-1][1] = release
        else:
            found.append([release, release, entry.status, entry.cause])
    return [tuple(span) for span in found]  # type: ignore[misc]


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(histories: list[History], title: str = "Support history", intro: str = "") -> str:
    """The whole Markdown page."""
    out = [f"# {title}", ""]
    if intro:
        out += [intro, ""]
    for history in histories:
        out += _environment(history)
    return "\n".join(out).rstrip() + "\n"


def _environment(history: History) -> list[str]:
    releases = history.releases
    out = [f"## torch {history.torch}, {history.device}", "",
           f"{len(releases)} transformers releases ({releases[0]} … {releases[-1]}), {len(history.cells)} cells; "
           f"{len(history.changes)} change points.", "", "### Changes", ""]
    lines = change_lines(history)
    out += [f"- {_md(line)}" for line in lines] or ["- none: every cell has the same status and failure reason in "
                                                    "every release"]
    out += ["", "### Table", "", LEGEND, ""]
    changed = {(c.cell, c.release) for c in history.changes}
    out.append("| cell | first change | " + " | ".join(releases) + " |")
    out.append("|---|---|" + "---|" * len(releases))
    for cell_id in history.cells:
        marks = []
        for release in releases:
            symbol = SYMBOLS.get(history.entries[cell_id][release].status, "?")
            marks.append(f"**{symbol}**" if (cell_id, release) in changed else symbol)
        out.append(f"| {_md(history.label(cell_id))} | {first_change(history, cell_id) or '—'} | "
                   + " | ".join(marks) + " |")
    out += ["", "### Since when: each row's releases and root causes", ""]
    for cell_id in history.cells:
        parts = []
        for first, last, status, cause in spans(history, cell_id):
            when = first if first == last else f"{first}–{last}"
            parts.append(f"{when} {status}" + (f" ({_md(cause)})" if cause and status != "pass" else ""))
        out.append(f"- `{cell_id}`: " + "; ".join(parts))
    return out + [""]
