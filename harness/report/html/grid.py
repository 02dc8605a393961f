"""The HTML report's grid: every measured cell as one coloured symbol, rows by backend variant, columns by mode,
dtype and shape; axes with a single value are left out; filters and legend above it."""

from __future__ import annotations

from typing import Any

from harness.config.matrix import DTYPES, MODES
from harness.report.html.cells import BY_NAME, CATEGORIES, anchor, category, where_text
from harness.report.html.text import esc, short
from harness.results.observations import Env, env_sort_key
from harness.report.row_summary import mode_label

ROW_AXES = ("source", "backend", "layout", "scope", "phase", "fullgraph", "env")
COLUMN_AXES = ("mode", "dtype", "shape")
# Filters offered even when the shown results have one value (the reviewer looks for them); others only when varied.
ALWAYS_FILTERED = ("backend", "mode", "dtype", "status", "category")
FILTER_ORDER = ("env", "source", "device", "backend", "layout", "scope", "phase", "mode", "fullgraph", "dtype",
                "shape", "status", "category")
_TITLES = {"env": "environment", "fullgraph": "fullgraph", "category": "category"}
_DTYPE_SHORT = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "float64": "fp64"}
_SOURCE_ORDER = ("transformers", "reference", "user")


def axis_value(axis: str, env: Env, cell: dict[str, Any]) -> str:
    """The value of an axis for a cell as a string (attribute values and filter options)."""
    if axis == "env":
        return env.key
    if axis == "category":
        return category(cell)
    if axis == "fullgraph":
        return {True: "true", False: "false", None: "none"}[cell.get("fullgraph")]
    return str(cell.get(axis) if cell.get(axis) is not None else "")


def value_label(axis: str, value: str, envs: dict[str, Env]) -> str:
    """How a value is shown in headers and filter options (an environment by what sets it apart from the others)."""
    if axis == "env":
        return env_names(envs).get(value, value)
    if axis == "mode":
        return mode_label(value)
    if axis == "fullgraph":
        return {"true": "yes", "false": "no", "none": "uncompiled"}.get(value, value)
    if axis == "category":
        return BY_NAME[value].label if value in BY_NAME else value
    return value


def env_names(envs: dict[str, Env]) -> dict[str, str]:
    """Environment key -> the parts of its short label that differ between the environments (all when one)."""
    parts = {key: env.short.split(" / ") for key, env in envs.items()}
    if len(parts) < 2 or len({len(p) for p in parts.values()}) > 1:
        return {key: env.short for key, env in envs.items()}
    differ = [i for i in range(len(next(iter(parts.values())))) if len({p[i] for p in parts.values()}) > 1]
    return {key: " / ".join(p[i] for i in differ) for key, p in parts.items()}


def varying_axes(observations: list[tuple[Env, dict[str, Any]]], axes: tuple[str, ...]) -> list[str]:
    """The axes that take more than one value among the observations (fullgraph: compiled cells only)."""
    out = []
    for axis in axes:
        values = {_slot(axis, env, cell) for env, cell in observations}
        if len(values) > 1:
            out.append(axis)
    return out


def grid_section(observations: list[tuple[Env, dict[str, Any]]]) -> str:
    """Filters, legend and the grid table (ids used by the page's script: filters, grid, shown)."""
    envs = {env.key: env for env, _ in observations}
    rows_axes = varying_axes(observations, ROW_AXES) or ["backend"]
    col_axes = varying_axes(observations, COLUMN_AXES) or ["mode"]
    # The device is part of the environment row; it is "the same in every cell" only when it is.
    one_device = len({c.get("device") for _, c in observations}) == 1
    single = [f"{_TITLES.get(a, a)} {value_label(a, _slot(a, *observations[0]), envs)}"
              for a in ROW_AXES + COLUMN_AXES + (("device",) if one_device else ())
              if a not in rows_axes and a not in col_axes and observations]
    leaves = sorted({tuple(_slot(a, env, c) for a in col_axes) for env, c in observations},
                    key=lambda t: tuple(_rank(a, v, envs) for a, v in zip(col_axes, t)))
    keys = sorted({tuple(_slot(a, env, c) for a in rows_axes) for env, c in observations},
                  key=lambda t: tuple(_rank(a, v, envs) for a, v in zip(rows_axes, t)))
    at = {(tuple(_slot(a, env, c) for a in rows_axes), tuple(_slot(a, env, c) for a in col_axes)): (env, c)
          for env, c in observations}
    parts = [_filters(observations, envs), _legend(observations)]
    short_shapes = shape_abbreviations(leaves, col_axes)
    spelled = [f"{short} = {value}" for value, short in sorted(short_shapes.items()) if short != value]
    hint = ([f"Same in every shown cell: {'; '.join(single)}."] if single else []) + (
        [f"Shapes: {', '.join(spelled)}."] if spelled else []) + [
        "Uncompiled cells sit in the fullgraph = no row. Hover a cell for its id, status, reason and error; "
        "click a failing one for its details."]
    parts.append(f'<p class="hint">{esc(" ".join(hint))}</p>')
    parts.append('<div class="gridwrap"><table id="grid"><thead>')
    parts += _header(rows_axes, col_axes, leaves, envs)
    parts.append("</thead><tbody>")
    previous: tuple = ()
    for key in keys:
        parts.append(_row(key, previous, rows_axes, col_axes, leaves, at, envs))
        previous = key
    parts.append("</tbody></table></div>")
    return "\n".join(parts)


def _slot(axis: str, env: Env, cell: dict[str, Any]) -> str:
    """The grid position of a cell on an axis: uncompiled cells share the breaks-allowed row."""
    value = axis_value(axis, env, cell)
    return "false" if axis == "fullgraph" and value == "none" else value


def _rank(axis: str, value: str, envs: dict[str, Env]) -> tuple:
    if axis == "mode":
        return (MODES.index(value) if value in MODES else len(MODES), value)
    if axis == "dtype":
        return (DTYPES.index(value) if value in DTYPES else len(DTYPES), value)
    if axis == "source":
        return (_SOURCE_ORDER.index(value) if value in _SOURCE_ORDER else len(_SOURCE_ORDER), value)
    if axis == "env":
        return (env_sort_key(envs[value]),) if value in envs else ((), value)
    if axis == "fullgraph":
        return (value != "true", value)
    return (value not in ("default", "kernel", "inference"), value)  # the matrix's defaults first


def _header(rows_axes, col_axes, leaves, envs) -> list[str]:
    out = []
    depth = len(col_axes)
    # Leaf labels repeat under every group: shapes are cut to their shortest unique prefix (the hint spells them).
    abbreviations = shape_abbreviations(leaves, col_axes)
    for level, axis in enumerate(col_axes):
        cells = []
        if level == 0:
            cells += [f'<th class="rh" rowspan="{depth}" scope="col">{esc(_TITLES.get(a, a))}</th>' for a in rows_axes]
        last = level == depth - 1
        start = 0
        while start < len(leaves):
            end = start
            while end + 1 < len(leaves) and leaves[end + 1][: level + 1] == leaves[start][: level + 1]:
                end += 1
            value = leaves[start][level]
            label = esc(abbreviations[value]) if last and value in abbreviations else _short_label(axis, value, envs)
            full = f"{axis} = {value_label(axis, value, envs)}"
            if last:
                attrs = "".join(f' data-{a}="{esc(v)}"' for a, v in zip(col_axes, leaves[start]))
                cells.append(f'<th class="leaf" data-col="{start}"{attrs} title="{esc(full)}">{label}</th>')
            else:
                cols = " ".join(str(i) for i in range(start, end + 1))
                cells.append(f'<th class="grp l{level}" colspan="{end - start + 1}" data-cols="{cols}" '
                             f'title="{esc(full)}">{label}</th>')
            start = end + 1
        out.append("<tr>" + "".join(cells) + "</tr>")
    return out


def shape_abbreviations(leaves: list[tuple], col_axes: list[str]) -> dict[str, str]:
    """Leaf header text per shape: its shortest unique prefix (empty when shapes are not the leaf axis)."""
    if not leaves or col_axes[-1] != "shape":
        return {}
    values = {leaf[-1] for leaf in leaves}
    out = {}
    for value in values:
        n = 1
        while n < len(value) and any(other != value and other.startswith(value[:n]) for other in values):
            n += 1
        out[value] = value[:n]
    return out


def _short_label(axis: str, value: str, envs: dict[str, Env]) -> str:
    if axis == "dtype":
        return esc(_DTYPE_SHORT.get(value, value))
    # A long name (max-autotune-no-cudagraphs) goes on two lines, broken after the hyphen nearest its middle.
    label = value_label(axis, value, envs)
    hyphens = [i for i, char in enumerate(label) if char == "-"]
    if len(label) <= 14 or not hyphens:
        return esc(label)
    cut = min(hyphens, key=lambda i: abs(i - len(label) / 2)) + 1
    return f"{esc(label[:cut])}<br>{esc(label[cut:])}"


def _row(key, previous, rows_axes, col_axes, leaves, at, envs) -> str:
    env, first = next(at[(key, leaf)] for leaf in leaves if (key, leaf) in at)
    attrs = "".join(f' data-{a}="{esc(v)}"' for a, v in zip(rows_axes, key))
    attrs += f' data-device="{esc(first.get("device"))}"'
    heads = []
    for i, (axis, value) in enumerate(zip(rows_axes, key)):
        repeated = previous[: i + 1] == key[: i + 1]
        heads.append(f'<th scope="row"{" class=rep" if repeated else ""}>{esc(value_label(axis, value, envs))}</th>')
    tds = []
    for i, leaf in enumerate(leaves):
        found = at.get((key, leaf))
        if found is None:
            tds.append(f'<td class="x" data-col="{i}"></td>')
            continue
        env, cell = found
        cat = category(cell)
        symbol = BY_NAME[cat].symbol
        if cat not in ("ok", "degraded", "not_claimed", "observed_pass") or cell["status"] != "pass":
            symbol = f'<a href="#{anchor(env.key, cell["id"])}">{esc(symbol)}</a>'
        extra = ' data-fullgraph="none"' if cell.get("fullgraph") is None else ""
        tds.append(f'<td class="c {cat}" data-col="{i}" data-status="{esc(cell["status"])}" data-category="{cat}"'
                   f'{extra} title="{esc(_title(env, cell, cat))}">{symbol}</td>')
    return f"<tr{attrs}>{''.join(heads)}{''.join(tds)}</tr>"


def _title(env: Env, cell: dict[str, Any], cat: str) -> str:
    lines = [cell["id"], f"{cell['status']}: {BY_NAME[cat].label}, {env.short}", cell.get("verdict_reason", "")]
    error = cell.get("error") or {}
    if error:
        where = where_text(error)
        lines.append(f"{error.get('type')}: {short(error.get('message'), 300)}" + (f" at {where}" if where else ""))
    for degradation in (cell.get("signals") or {}).get("degraded") or []:
        lines.append(f"degraded: {short(degradation, 200)}")
    return "\n".join(line for line in lines if line)


def _filters(observations, envs) -> str:
    present = {axis: sorted({axis_value(axis, env, c) for env, c in observations},
                            key=lambda v, a=axis: _rank(a, v, envs)) for axis in FILTER_ORDER}
    if present["category"]:
        order = [c.name for c in CATEGORIES]
        present["category"].sort(key=order.index)
    controls = []
    for axis in FILTER_ORDER:
        values = present[axis]
        if len(values) < 2 and axis not in ALWAYS_FILTERED:
            continue
        options = "".join(f'<option value="{esc(v)}">{esc(value_label(axis, v, envs))}</option>' for v in values)
        controls.append(f'<label>{esc(_TITLES.get(axis, axis))} <select data-axis="{esc(axis)}" '
                        f'name="{esc(axis)}"><option value="">all</option>{options}</select></label>')
    total = len(observations)
    return (f'<form id="filters" class="filters" onsubmit="return false">{"".join(controls)}'
            f'<button type="button" id="reset">reset</button> <span class="hint">showing <b id="shown">{total}</b> '
            f"of {total} cells; filters go into the address (#status=compile_error&amp;backend=…)</span></form>")


def _legend(observations) -> str:
    counts = {c.name: 0 for c in CATEGORIES}
    for _, cell in observations:
        counts[category(cell)] += 1
    chips = "".join(f'<button type="button" class="chip {c.name}{"" if counts[c.name] else " zero"}" '
                    f'data-category="{c.name}" title="{esc(c.text)} (click: show only these)">'
                    f"<b>{esc(c.symbol)}</b> {esc(c.label)} <b>{counts[c.name]}</b></button>" for c in CATEGORIES)
    return f'<div class="legend" id="legend">{chips}</div>'
