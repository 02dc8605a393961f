"""The history as one self-contained HTML page: per environment the changes and a release x cell grid.

Rows are grouped by implementation, then dtype, then compile mode (a header row per group); one column per
release; one colour per status; the release where a cell changed is outlined, and every square's tooltip names
the status and root cause.
"""

from __future__ import annotations

import html

from harness.history.markdown import SYMBOLS, change_lines, spans
from harness.history.table import NOT_APPLICABLE, History, first_change

COLOURS = {"pass": "#b9e4b9", "compile_error": "#f2a3a3", "runtime_error": "#f5c28c", "mismatch": "#e9a6dc",
           "crash": "#b58ad8", "timeout": "#9fb7e8", NOT_APPLICABLE: "#eeeeee"}
CSS = """
body{font:13px/1.4 system-ui,sans-serif;margin:.8em 1.2em;color:#222}
h1{font-size:1.35em}h2{font-size:1.15em;margin:1.2em 0 .4em;border-bottom:1px solid #ddd}h3{font-size:1em}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:1px 4px;text-align:left;white-space:nowrap}
th.rel{writing-mode:vertical-rl;transform:rotate(180deg);font-weight:500;font-size:11px;padding:3px 1px}
td.s{text-align:center;min-width:1.3em;font-size:11px;padding:1px}td.s.chg{outline:2px solid #222;outline-offset:-2px}
tr.group th{background:#eef0f3;text-align:left}tr.sub th{background:#f7f7f7;font-weight:500;padding-left:1.2em}
td.row{padding-left:2em;font-size:12px}td.first{color:#555;font-size:12px}
.legend span{display:inline-block;padding:0 6px;margin-right:.4em;border:1px solid #bbb;border-radius:3px}
ul.changes li{margin:.15em 0}.gridwrap{overflow:auto;max-width:100%}
"""


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def render(histories: list[History], title: str = "Support history", intro: str = "") -> str:
    """The whole page."""
    body = [f"<h1>{_e(title)}</h1>"]
    if intro:
        body.append(f"<p>{_e(intro)}</p>")
    legend = "".join(f'<span style="background:{colour}">{_e(SYMBOLS[status])} {_e(status)}</span>'
                     for status, colour in COLOURS.items())
    body.append(f'<p class="legend">{legend} <span style="outline:2px solid #222">changed here</span></p>')
    for history in histories:
        body += _environment(history)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + _e(title)
            + f"</title><style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _environment(history: History) -> list[str]:
    out = [f"<h2>torch {_e(history.torch)}, {_e(history.device)}</h2>",
           f"<p>{len(history.releases)} transformers releases, {len(history.cells)} cells, "
           f"{len(history.changes)} change points.</p>", "<h3>Changes</h3>", '<ul class="changes">']
    lines = change_lines(history)
    out += [f"<li>{_e(line)}</li>" for line in lines] or ["<li>none</li>"]
    out += ["</ul>", "<h3>Table</h3>", '<div class="gridwrap"><table>', "<thead><tr><th>cell</th><th>first change</th>"
            + "".join(f'<th class="rel">{_e(r)}</th>' for r in history.releases) + "</tr></thead><tbody>"]
    changed = {(c.cell, c.release) for c in history.changes}
    width = len(history.releases) + 2
    group = sub = None
    for cell_id, axes in history.cells.items():
        if axes.get("backend") != group:
            group, sub = axes.get("backend"), None
            out.append(f'<tr class="group"><th colspan="{width}">{_e(group)}</th></tr>')
        if (axes.get("dtype"), axes.get("mode")) != sub:
            sub = (axes.get("dtype"), axes.get("mode"))
            mode = "uncompiled" if sub[1] == "uncompiled" else f"compiled (mode={sub[1]})"
            out.append(f'<tr class="sub"><th colspan="{width}">{_e(sub[0])}, {_e(mode)}</th></tr>')
        row = [f'<td class="row" title="{_e(cell_id)}">{_e(_rest(history, cell_id))}</td>',
               f'<td class="first">{_e(first_change(history, cell_id) or "")}</td>']
        for release in history.releases:
            entry = history.entries[cell_id][release]
            tip = f"transformers {release}: {entry.status}" + (f" — {entry.cause}" if entry.cause else "")
            css = "s chg" if (cell_id, release) in changed else "s"
            row.append(f'<td class="{css}" style="background:{COLOURS.get(entry.status, "#fff")}" '
                       f'title="{_e(tip)}">{_e(SYMBOLS.get(entry.status, "?"))}</td>')
        out.append("<tr>" + "".join(row) + "</tr>")
    out += ["</tbody></table></div>", "<h3>Since when</h3>", "<ul>"]
    for cell_id in history.cells:
        parts = [(first if first == last else f"{first}–{last}") + f" {status}"
                 + (f" ({cause})" if cause and status != "pass" else "")
                 for first, last, status, cause in spans(history, cell_id)]
        out.append(f"<li><code>{_e(cell_id)}</code>: {_e('; '.join(parts))}</li>")
    return out + ["</ul>"]


def _rest(history: History, cell_id: str) -> str:
    """The row label without the implementation, dtype and mode its group headers already show."""
    return history.label(cell_id, skip=("backend", "dtype", "mode")) or "(one cell)"
