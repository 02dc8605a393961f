"""The HTML report's first section: how many cells, by status, degradation, not run, and verdict, per environment."""

from __future__ import annotations

from typing import Any

from harness.report.html.text import esc
from harness.results.verdict import Status

_FAILING = tuple(s.value for s in Status if s not in (Status.PASS, Status.SKIPPED))
_VERDICTS = (("ok", "ok"), ("regression", "regression"), ("unexpected_pass", "unexpected pass"), ("flaky", "flaky"))


def count_row(cells: list[dict[str, Any]], not_run: int) -> dict[str, int]:
    """Counts of one set of measured cells (plus how many were not run): totals, statuses, degraded, verdicts."""
    row = {"cells": len(cells) + not_run, "pass": 0, "failed": 0, "degraded": 0, "not run": not_run}
    row.update({status: 0 for status in _FAILING})
    row.update({verdict: 0 for verdict, _ in _VERDICTS})
    for cell in cells:
        status = cell["status"]
        row[status] = row.get(status, 0) + 1
        row["failed"] += status != "pass"
        row["degraded"] += status == "pass" and bool((cell.get("signals") or {}).get("degraded"))
        verdict = cell.get("verdict")
        row[verdict] = row.get(verdict, 0) + 1
    return row


def counts_section(by_env: list[tuple[str, list[dict[str, Any]], int]]) -> str:
    """The counts table: one row per (environment label, measured cells, cells not run), a total when several."""
    rows = [(label, count_row(cells, not_run)) for label, cells, not_run in by_env]
    if len(rows) > 1:
        rows.append(("all", count_row([c for _, cells, _ in by_env for c in cells], sum(n for *_, n in by_env))))
    present = [s for s in _FAILING if any(r[s] for _, r in rows)]
    columns = [("cells", "cells", ""), ("pass", "pass", "n-pass"), ("degraded", "degraded", "n-degraded"),
               ("failed", "failed", "n-failed")]
    columns += [(s, s, "n-status") for s in present]
    columns += [("not run", "not run", "n-notrun")]
    columns += [(v, label, f"n-{v}") for v, label in _VERDICTS]
    head = ('<tr><th rowspan="2">environment</th><th colspan="{}">cells by status</th>'
            '<th colspan="{}">verdict against the docs</th></tr>').format(len(columns) - len(_VERDICTS),
                                                                         len(_VERDICTS))
    head += "<tr>" + "".join(f"<th>{esc(label)}</th>" for _, label, _ in columns) + "</tr>"
    body = []
    for label, row in rows:
        tds = []
        for key, _, cls in columns:
            value = row[key]
            alert = " alert" if value and key in ("regression", "unexpected_pass", "flaky") else ""
            tds.append(f'<td class="num {cls}{alert}" data-count="{esc(key)}">{value}</td>')
        total = ' class="total"' if label == "all" else ""
        body.append(f"<tr{total}><th>{esc(label)}</th>{''.join(tds)}</tr>")
    return (f'<table class="counts"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'
            '<p class="hint">failed = every status but pass; degraded passes count as pass too; not run = skipped '
            "here (for example cuda cells on a machine without a GPU).</p>")
