"""One self-contained HTML page: the support table, the claims check, and a grid of every cell by verdict."""

from __future__ import annotations

import html
import os
import re
import shlex
from typing import Any

from harness.report_claims import Check
from harness.report_inputs import Env
from harness.report_markdown import HEADER, generated_line
from harness.report_merge import Merged, is_flaky
from harness.report_model import Table, dtypes_text, mode_label, modes_text

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.6em 0}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3}
td.c{text-align:center;min-width:2.2em}
.ok{background:#c8ecc8}.degraded{background:#e3f5c0}.xfail{background:#dedede}
.regression{background:#f4a6a6}.unexpected_pass{background:#ffe28a}.flaky{background:#d7b8f0}
td.c a{color:inherit;text-decoration:none;display:block}
details{margin:.3em 0;padding:.3em .6em;border-left:4px solid #ccc}
details.regression{border-color:#d33}details.flaky{border-color:#93c}details.unexpected_pass{border-color:#db0}
pre{background:#f7f7f7;padding:.5em;overflow-x:auto;white-space:pre-wrap;max-height:20em}
code{background:#f2f2f2;padding:0 3px}
.legend span{display:inline-block;padding:1px 8px;margin-right:6px;border:1px solid #ccc}
"""
_SYMBOL = {"ok": "✓", "degraded": "✓*", "xfail": "✗", "regression": "✗", "unexpected_pass": "✓!",
           "flaky": "~"}
_LEGEND = (("ok", "passes, as expected"), ("degraded", "passes, degraded (recompile storm, CUDA graphs skipped)"),
           ("xfail", "fails, as the docs say"), ("regression", "fails against the docs' claim (regression)"),
           ("unexpected_pass", "passes although the docs say it fails"), ("flaky", "repeats disagree"))


def report_html(table: Table, checks: list[Check], claims_source: str, merged: Merged, source: str | None,
                command: str) -> str:
    """The whole page as one string (inline CSS, no scripts, no external resources)."""
    observations = [obs for obs in merged.observations() if source is None or obs.cell["source"] == source]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>Experts backends: torch.compile matrix</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>Experts backends under torch.compile: measured</h1>",
             f"<p>{_inline(generated_line(table, command))}</p>",
             "<h2>Support table</h2>", _support_table(table), "<h2>Docs claim vs measured</h2>",
             f"<p>Claims from <code>{_e(claims_source)}</code>.</p>", _claims_table(checks),
             "<h2>Every cell</h2>", _legend()]
    by_env: dict[str, list[dict[str, Any]]] = {}
    for obs in observations:
        by_env.setdefault(obs.env.key, []).append(obs.cell)
    for env in table.envs:
        parts.append(_grid(env, by_env.get(env.key, [])))
    parts.append("<h2>Failing cells</h2>")
    parts.append(_failures(table.envs, by_env))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def cell_class(cell: dict[str, Any]) -> str:
    """The colour class of a cell: ok, degraded, xfail, regression, unexpected_pass or flaky."""
    if is_flaky(cell):
        return "flaky"
    verdict = cell["verdict"]
    if verdict in ("regression", "unexpected_pass"):
        return verdict
    if cell["status"] != "pass":
        return "xfail"
    return "degraded" if (cell.get("signals") or {}).get("degraded") else "ok"


def repro_script_command(cell: dict[str, Any]) -> str:
    """The `repro` command that writes this cell's standalone script (same matrix as its rerun command)."""
    words = shlex.split(cell.get("repro") or "")
    matrix = words[words.index("--matrix") + 1] if "--matrix" in words[:-1] else None
    if matrix and os.path.isabs(matrix) and os.path.basename(matrix) == "matrix.yaml":
        matrix = None  # the repository's own matrix (recorded absolute on the runner): the default
    command = ["python", "-m", "harness", "repro", cell["id"]] + (["--matrix", matrix] if matrix else [])
    return " ".join(shlex.quote(word) for word in command + ["--out", "repro.py"])


def anchor(env_key: str, cell_id: str) -> str:
    """A safe fragment id for a cell of an environment."""
    return "c-" + re.sub(r"[^A-Za-z0-9_.-]", "_", f"{env_key}--{cell_id}")


def _support_table(table: Table) -> str:
    rows = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in HEADER) + "</tr>"]
    for row in table.rows:
        s = row.summary
        values = ((row.label, "implementation"), (modes_text(s.modes), "modes"), (dtypes_text(s.dtypes), "dtypes"),
                  (s.fullgraph, "fullgraph"))
        rows.append("<tr>" + "".join(f"<td>{_e(text)}{_sup(row.notes.get(col))}</td>" for text, col in values)
                    + "</tr>")
    rows.append("</table>")
    if table.notes:
        rows.append("<ol>" + "".join(f"<li>{_inline(text)}</li>" for text in table.notes) + "</ol>")
    return "\n".join(rows)


def _claims_table(checks: list[Check]) -> str:
    rows = ["<table><tr><th>Implementation</th><th>aspect</th><th>docs claim</th><th>measured</th><th>agrees</th>"
            "<th>difference</th></tr>"]
    for c in checks:
        cls = "" if c.agrees is None else (' class="ok"' if c.agrees else ' class="regression"')
        agrees = "n/a" if c.agrees is None else ("yes" if c.agrees else "no")
        rows.append(f"<tr><td>{_e(c.label)}</td><td>{_e(c.aspect)}</td><td>{_e(c.claim)}</td>"
                    f"<td>{_e(c.measured)}</td><td{cls}>{agrees}</td><td>{_e(c.detail)}</td></tr>")
    return "\n".join(rows + ["</table>"])


def _legend() -> str:
    items = "".join(f'<span class="{cls}">{_SYMBOL[cls]} {_e(text)}</span>' for cls, text in _LEGEND)
    return f'<p class="legend">{items}</p>'


def _grid(env: Env, cells: list[dict[str, Any]]) -> str:
    """Rows: source, backend, mode, fullgraph; columns: dtype, then shape (and layout/scope/phase when varied)."""
    def column(cell):
        """Grid column of a cell."""
        extra = [cell.get(axis) for axis in ("layout", "scope", "phase")
                 if len({c.get(axis) for c in cells}) > 1]
        return (cell["dtype"], cell["shape"], *extra)

    def row(cell):
        """Grid row of a cell."""
        fullgraph = {None: "uncompiled", True: "fullgraph", False: "breaks allowed"}[cell["fullgraph"]]
        return (cell["source"], cell["backend"], mode_label(cell["mode"]), fullgraph)

    columns = sorted({column(c) for c in cells})
    rows = sorted({row(c) for c in cells}, key=lambda r: (r[0], r[1], _mode_rank(r[2]), r[3]))
    at = {(row(c), column(c)): c for c in cells}
    out = [f"<h3>{_e(env.label)}</h3>", "<table><tr><th>source</th><th>backend</th><th>mode</th><th>fullgraph</th>"]
    out.append("".join(f"<th>{_e(' / '.join(map(str, col)))}</th>" for col in columns) + "</tr>")
    for r in rows:
        tds = []
        for col in columns:
            cell = at.get((r, col))
            if cell is None:
                tds.append('<td class="c"></td>')
                continue
            cls = cell_class(cell)
            title = f"{cell['id']}: {cell['status']} ({cell['verdict_reason']})"
            symbol = _SYMBOL[cls]
            if cell["status"] != "pass" or is_flaky(cell):
                symbol = f'<a href="#{anchor(env.key, cell["id"])}">{symbol}</a>'
            tds.append(f'<td class="c {cls}" title="{_e(title)}">{symbol}</td>')
        out.append("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in r) + "".join(tds) + "</tr>")
    return "\n".join(out + ["</table>"])


def _failures(envs: list[Env], by_env: dict[str, list[dict[str, Any]]]) -> str:
    out = []
    for env in envs:
        for cell in sorted(by_env.get(env.key, []), key=lambda c: c["id"]):
            if cell["status"] == "pass" and not is_flaky(cell):
                continue
            cls = cell_class(cell)
            error = cell.get("error") or {}
            is_open = " open" if cls in ("regression", "flaky") else ""
            body = [f"<p><b>{_e(cell['status'])}</b>, verdict <b>{_e(cell['verdict'])}</b>: "
                    f"{_e(cell.get('verdict_reason', ''))}</p>"]
            if error:
                body.append(f"<p><code>{_e(error.get('type'))}</code>: {_e(error.get('message'))}</p>")
                if error.get("cause"):
                    body.append(f"<p>cause: {_e(error['cause'])}</p>")
                if error.get("detail"):
                    body.append(f"<pre>{_e(error['detail'])}</pre>")
            for outcome in cell.get("flaky") or []:
                body.append(f"<p>observed <b>{_e(outcome['status'])}</b> in <code>{_e(outcome['origin'])}</code>: "
                            f"{_e(outcome.get('message') or '')}</p>")
            body.append(f"<p>rerun this cell: <code>{_e(cell.get('repro', ''))}</code><br>standalone script: "
                        f"<code>{_e(repro_script_command(cell))}</code></p>")
            out.append(f'<details id="{anchor(env.key, cell["id"])}" class="{cls}"{is_open}><summary>'
                       f"[{_e(cls)}] <code>{_e(cell['id'])}</code> ({_e(env.short)})</summary>"
                       + "".join(body) + "</details>")
    return "\n".join(out) or "<p>None.</p>"


def _mode_rank(label: str) -> int:
    order = ("uncompiled", "None", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
    return order.index(label) if label in order else len(order)


def _sup(notes: list[int] | None) -> str:
    return f" <sup>{', '.join(map(str, notes))}</sup>" if notes else ""


def _inline(text: str) -> str:
    """Escape, then render the Markdown the notes use: `code` and _emphasis_ around the whole line."""
    escaped = _e(text)
    escaped = re.sub(r"`([^`]*)`", r"<code>\1</code>", escaped)
    if escaped.startswith("_") and escaped.endswith("_"):
        escaped = f"<em>{escaped[1:-1]}</em>"
    return escaped.replace("\\|", "|")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)
