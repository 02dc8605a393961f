"""What failed the gate, grouped by root cause: against the docs (verdicts) and against the baseline (changes)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from harness.results.baseline import KINDS, Change, summary
from harness.report.html.cells import (BY_NAME, Cause, anchor, category, group_causes, normalise, rerun_command,
                                      where_text)
from harness.report.html.text import esc, plural, short

_GATING_CATEGORIES = ("regression", "unexpected_pass", "flaky")


@dataclass(frozen=True)
class BaselineCheck:
    """One environment's comparison with its baseline: the baseline file (None: there is none) and the changes."""

    env_key: str
    env_label: str
    path: str | None
    changes: list[Change]


def gate_cells(cells: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """The (environment label, cell) pairs whose verdict fails the gate against the docs."""
    return [(env, cell) for env, cell in cells if category(cell) in _GATING_CATEGORIES]


def headline(docs: list[tuple[str, dict[str, Any]]], baseline: list[BaselineCheck] | None) -> str:
    """One sentence on top of the page: did the gate pass, and why not."""
    counts = {name: sum(1 for _, c in docs if category(c) == name) for name in _GATING_CATEGORIES}
    parts = [f"{counts['regression']} regression(s), {counts['unexpected_pass']} unexpected pass(es) "
             f"(they fail with --strict, as CI runs), {counts['flaky']} flaky against the docs"]
    gating = 0
    if baseline is None:
        parts.append("baseline not compared (render with --baseline auto or FILE)")
    else:
        gating = sum(1 for b in baseline for c in b.changes if c.gating)
        missing = [b.env_label for b in baseline if b.path is None]
        parts.append(f"{gating} gating change(s) against the baseline"
                     + (f" (no baseline for {', '.join(missing)})" if missing else ""))
    failed = any(counts.values()) or gating
    word = "FAILED" if failed else "passed"
    return (f'<p id="headline" class="headline {"bad" if failed else "good"}"><b>Gate {word}</b>: '
            f"{esc('; '.join(parts))}.</p>")


def gate_section(docs: list[tuple[str, dict[str, Any]]], baseline: list[BaselineCheck] | None,
                 cells: dict[tuple[str, str], dict[str, Any]], results: list[str], show_envs: bool = False) -> str:
    """Both halves of the gate: failures against the docs, then changes against the baseline, by root cause."""
    out = ["<h3>Against the docs</h3>"]
    causes = group_causes(docs)
    if causes:
        out.append(f"<p>{plural(len(docs), 'cell')} in {plural(len(causes), 'root cause')}; a regression fails the "
                   "run, an unexpected pass fails it with <code>--strict</code> (as CI runs), a flaky cell always.</p>")
        several = len({env for env, _ in docs}) > 1 or show_envs
        known = {cell_id for _, cell_id in cells}
        out += [cause_block(cause, known, open_ids=len(cause.cells) <= 3, show_envs=several) for cause in causes]
    else:
        out.append('<p class="none">None: every measured cell agrees with its documented expectation.</p>')
    out.append("<h3>Against the baseline</h3>")
    out.append(_baseline_part(baseline, cells, results))
    return "\n".join(out)


def cause_block(cause: Cause, known: set[str], open_ids: bool = False, show_envs: bool = False) -> str:
    """One root cause: category, cell count, status and error (with where), the reason, ids, rerun command
    (`-k` when one selects exactly these among the `known` ids); `show_envs`: name the environments."""
    cat = BY_NAME[cause.key[0]]
    cell = cause.example
    error = cell.get("error") or {}
    envs = sorted({env for env, _ in cause.cells})
    head = (f'<span class="chip {cat.name}">{esc(cat.symbol)} {esc(cat.label)}</span> '
            f'<b class="n">{plural(len(cause.cells), "cell")}</b>')
    if len(envs) > 1 or cause.key[0] != "unexpected_pass":
        head += f" · <code>{esc(cause.key[1])}</code>"
    if error.get("type"):
        head += f' · <code title="{esc(error["type"])}">{esc(str(error["type"]).rsplit(".", 1)[-1])}</code>'
    lines = [f'<div class="cause {cat.name}" data-cat="{cat.name}"><p class="head">{head}</p>']
    if error.get("message"):
        where = where_text(error)
        varies = len({(c.get("error") or {}).get("message") for _, c in cause.cells}) > 1
        lines.append(f'<p class="msg">{esc(short(error["message"], 400))}'
                     + (f' <span class="where">at <code>{esc(where)}</code></span>' if where else "")
                     + (' <span class="hint">(numbers vary)</span>' if varies else "") + "</p>")
    lines.append(f'<p class="why">{esc(_reason(cause))}</p>')
    if show_envs:
        lines.append(f'<p class="envs">in {esc(", ".join(envs))}</p>')
    lines.append(_ids(cause.ids, [(c.get("env", ""), c["id"]) for _, c in cause.cells], open_ids))
    lines.append(_command("rerun", rerun_command([c for _, c in cause.cells], known)))
    return "\n".join(lines) + "</div>"


def _reason(cause: Cause) -> str:
    cell = cause.example
    name = cause.key[0]
    expected = (cell.get("expected") or {}).get("reason") or ""
    if name == "regression":
        return f"{cell.get('verdict_reason', '')}; the docs: {expected}"
    if name == "flaky":
        return f"repeats disagree: {cause.key[1]}"
    if name == "unexpected_pass":
        return f"passes, but expected to fail: {expected}"
    return expected or cell.get("verdict_reason", "")


def _ids(ids: list[str], links: list[tuple[str, str]], open_: bool) -> str:
    seen, items = set(), []
    for env_key, cell_id in sorted(links, key=lambda item: (item[1], item[0])):
        if (env_key, cell_id) in seen:
            continue
        seen.add((env_key, cell_id))
        suffix = f' <span class="hint">{esc(env_key)}</span>' if len({e for e, _ in links}) > 1 else ""
        items.append(f'<li><a href="#{anchor(env_key, cell_id)}">{esc(cell_id)}</a>{suffix}</li>')
    return (f'<details class="ids"{" open" if open_ else ""}><summary>{plural(len(ids), "cell id")}</summary>'
            f'<ul>{"".join(items)}</ul></details>')


def _command(label: str, command: str) -> str:
    return f'<div class="cmd"><span>{esc(label)}:</span> <code>{esc(command)}</code></div>'


def _baseline_part(baseline: list[BaselineCheck] | None, cells: dict[tuple[str, str], dict[str, Any]],
                   results: list[str]) -> str:
    if baseline is None:
        return ('<p class="none">Not compared: give the report <code>--baseline auto</code> (each environment\'s '
                "<code>reports/baselines/&lt;environment&gt;.json</code>) or <code>--baseline FILE</code>.</p>")
    out = []
    accept = "python -m harness update-baseline " + " ".join(results or ["RESULTS.json"])
    for check in baseline:
        if check.path is None:
            out.append(f'<p class="none">{esc(check.env_label)}: no baseline recorded (record one: '
                       f"<code>{esc(accept)}</code>).</p>")
            continue
        gating = [c for c in check.changes if c.gating]
        other = [c for c in check.changes if not c.gating]
        out.append(f"<p><b>{esc(check.env_label)}</b> against <code>{esc(_shown_path(check.path))}</code>: "
                   f"{esc(summary(check.changes) or 'no change')}.</p>")
        for key, changes in _change_groups(gating):
            out.append(_change_block(key, changes, check.env_key, cells, accept))
        if other:
            items = "".join(f"<li><code>{esc(c.id)}</code> {esc(c.kind)}: {esc(c.before)} → {esc(c.after)}"
                            f"{' (' + esc(c.detail) + ')' if c.detail else ''}</li>" for c in other)
            out.append(f'<details class="ids"><summary>{plural(len(other), "change")} that do not gate '
                       f"({esc(summary(other))})</summary><ul>{items}</ul></details>")
    return "\n".join(out)


def _shown_path(path: str) -> str:
    """A path below the working folder relative to it (as typed in a checkout), any other as given."""
    relative = os.path.relpath(path) if os.path.isabs(path) else path
    return path if relative.startswith("..") else relative


def _change_groups(changes: list[Change]) -> list[tuple[tuple, list[Change]]]:
    groups: dict[tuple, list[Change]] = {}
    for change in changes:
        groups.setdefault((change.kind, change.before, change.after, normalise(change.detail)), []).append(change)
    return sorted(groups.items(), key=lambda item: (KINDS.index(item[0][0]), -len(item[1]), item[0]))


def _change_block(key: tuple, changes: list[Change], env_key: str, cells: dict[tuple[str, str], dict[str, Any]],
                  accept: str) -> str:
    kind, before, after, _ = key
    cls = {"fixed": "unexpected_pass", "flaky": "flaky"}.get(kind, "regression")
    ids = sorted({c.id for c in changes})
    lines = [f'<div class="cause {cls}" data-kind="{esc(kind)}"><p class="head"><span class="chip {cls}">'
             f'{esc(kind.replace("_", " "))}</span> <b class="n">{plural(len(ids), "cell")}</b> · '
             f"<code>{esc(before)}</code> → <code>{esc(after)}</code></p>"]
    if changes[0].detail:
        lines.append(f'<p class="msg">{esc(short(changes[0].detail, 400))}</p>')
    lines.append(_ids(ids, [(env_key, i) for i in ids], len(ids) <= 3))
    found = [cells[(env_key, i)] for i in ids if (env_key, i) in cells]
    if found:
        lines.append(_command("rerun", rerun_command(found, {cell_id for _, cell_id in cells})))
    if kind == "fixed":
        lines.append(_command("accept the fix", accept))
    return "\n".join(lines) + "</div>"
