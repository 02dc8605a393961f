"""The HTML report's reference sections: the measured support table, the claims check, and every cell's details."""

from __future__ import annotations

from typing import Any

from harness.report.docs_table import DocsTable
from harness.report.claims import Check
from harness.report.html.cells import BY_NAME, anchor, category, repro_script_command, where_text
from harness.report.html.text import esc, inline
from harness.results.merge import flaky_outcomes, is_flaky
from harness.results.observations import Env
from harness.report.markdown import HEADER


def support_table(table: DocsTable) -> str:
    """The support table in the documentation's columns (rows give their four cells), with its notes."""
    rows = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in HEADER) + "</tr>"]
    for row in table.rows:
        rows.append("<tr>" + "".join(f"<td>{esc(text)}</td>" for text in row.cells()) + "</tr>")
    rows.append("</table>")
    if table.notes:
        rows.append("<ul>" + "".join(f"<li>{inline(text)}</li>" for text in table.notes) + "</ul>")
    return "\n".join(rows)


def claims_table(checks: list[Check]) -> str:
    """Docs claim vs measured, one row per implementation, platform and column."""
    rows = ["<table><tr><th>Implementation</th><th>platform</th><th>column</th><th>docs claim</th><th>measured</th>"
            "<th>verdict</th><th>difference</th></tr>"]
    for c in checks:
        verdict = getattr(c, "verdict", None) or ("not measured" if c.agrees is None else
                                                  "holds" if c.agrees else "wrong")
        cls = "" if c.agrees is None else (' class="ok"' if c.agrees else ' class="regression"')
        rows.append(f"<tr><td>{esc(c.label)}</td><td>{esc(getattr(c, 'platform', ''))}</td><td>{esc(c.aspect)}</td>"
                    f"<td>{esc(c.claim)}</td><td>{esc(c.measured)}</td><td{cls}>{esc(verdict)}</td>"
                    f"<td>{esc(c.detail)}</td></tr>")
    return "\n".join(rows + ["</table>"])


def needs_details(cell: dict[str, Any]) -> bool:
    """Cells the page explains one by one: every failure, flaky cell and unexpected pass."""
    return cell["status"] != "pass" or category(cell) in ("flaky", "unexpected_pass")


def cell_details(observations: list[tuple[Env, dict[str, Any]]]) -> str:
    """One collapsible block per cell that needs explaining (gating ones open), anchored for the grid's links."""
    out = []
    for env, cell in sorted(observations, key=lambda item: (item[1]["id"], item[0].key)):
        if not needs_details(cell):
            continue
        cat = category(cell)
        error = cell.get("error") or {}
        is_open = " open" if BY_NAME[cat].gating else ""
        expected = cell.get("expected") or {}
        body = [f"<p><b>{esc(cell['status'])}</b>, verdict <b>{esc(cell.get('verdict'))}</b>: "
                f"{esc(cell.get('verdict_reason', ''))}</p>"]
        if expected.get("reason"):
            body.append(f"<p>expected <b>{esc(expected.get('outcome'))}</b>: {esc(expected['reason'])}</p>")
        if error:
            where = where_text(error)
            body.append(f"<p><code>{esc(error.get('type'))}</code>: {esc(error.get('message'))}"
                        + (f" <span class=\"where\">at <code>{esc(where)}</code></span>" if where else "") + "</p>")
            if error.get("wrapper"):
                body.append(f"<p>reported by the compiler as: {esc(error['wrapper'])}</p>")
            if error.get("cause"):
                body.append(f"<p>cause: {esc(error['cause'])}</p>")
            if error.get("detail"):
                body.append(f"<pre>{esc(error['detail'])}</pre>")
        for outcome in flaky_outcomes(cell) if is_flaky(cell) else ():
            body.append(f"<p>observed <b>{esc(outcome['status'])}</b> in <code>{esc(outcome['origin'])}</code>: "
                        f"{esc(outcome.get('message') or '')}</p>")
        body.append(f"<p>rerun this cell: <code>{esc(cell.get('repro', ''))}</code><br>standalone script: "
                    f"<code>{esc(repro_script_command(cell))}</code></p>")
        out.append(f'<details id="{anchor(env.key, cell["id"])}" class="cell {cat}"{is_open}><summary>'
                   f'<span class="chip {cat}">{esc(BY_NAME[cat].symbol)} {esc(BY_NAME[cat].label)}</span> '
                   f"<code>{esc(cell['id'])}</code> ({esc(env.short)})</summary>" + "".join(body) + "</details>")
    return "\n".join(out) or "<p>None.</p>"
