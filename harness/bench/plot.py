"""PNG figures of benchmark results (matplotlib): latency, peak memory and roofline fraction against tokens."""

from __future__ import annotations

import os

from harness.errors import HarnessError

_COLORS = {"eager": "tab:green", "batched_mm": "tab:red", "grouped_mm": "tab:blue"}
_STYLES = {"uncompiled": "-", "default": "--", "max-autotune-no-cudagraphs": "-.", "reduce-overhead": ":",
           "max-autotune": (0, (5, 1, 1, 1, 1, 1))}
_MARKERS = {"uncompiled": "o", "default": "s", "max-autotune-no-cudagraphs": "^", "reduce-overhead": "v",
            "max-autotune": "D"}
_SOURCES = ("transformers", "reference")


def _pyplot():
    """matplotlib.pyplot on the Agg backend, or a HarnessError saying how to get it."""
    try:
        import matplotlib
    except ImportError:
        raise HarnessError("plots need matplotlib: pip install 'moe-compile-matrix[bench]' or use "
                           "`nox -s benchmark`", key="--report") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_all(doc: dict, out_dir: str) -> list[str]:
    """Write every figure for one device's results; returns the file names."""
    device = doc["device"]
    files = []
    for shape in _shapes(doc):
        files.append(_latency(doc, shape, os.path.join(out_dir, f"latency-{device}-{shape}.png")))
        if device == "cuda" and any("roofline_fraction" in p for p in doc["points"] if p["shape"] == shape):
            files.append(_roofline(doc, shape, os.path.join(out_dir, f"roofline-{device}-{shape}.png")))
    files.append(_memory(doc, os.path.join(out_dir, f"memory-{device}.png")))
    return [os.path.basename(path) for path in files]


def _shapes(doc: dict) -> list[str]:
    return [shape["name"] for shape in doc["config"]["shapes"]]


def _series(doc: dict, shape: str, dtype: str, source: str, field: str) -> dict:
    """{(name, mode): [(tokens, value), ...]} of ok points."""
    series: dict = {}
    for point in doc["points"]:
        if (point["status"] == "ok" and point["shape"] == shape and point["dtype"] == dtype
                and point["source"] == source and field in point):
            series.setdefault((point["backend"], point["mode"]), []).append((point["tokens"], point[field]))
    return {key: sorted(values) for key, values in series.items()}


def _title(doc: dict, shape: str) -> str:
    env = doc["environment"]
    note = next((s["note"] for s in doc["config"]["shapes"] if s["name"] == shape), "")
    return (f"{shape} on {env.get('device_name')} - torch {env.get('torch')}, transformers "
            f"{env.get('transformers')}\n{note}")


def _latency(doc: dict, shape: str, path: str) -> str:
    """Median latency vs tokens, log-log: one panel per dtype and source, one line per backend and setting."""
    plt = _pyplot()
    dtypes = doc["config"]["dtypes"]
    fig, axes = plt.subplots(len(dtypes), len(_SOURCES), figsize=(13, 4.6 * len(dtypes)), squeeze=False)
    for row, dtype in enumerate(dtypes):
        for col, source in enumerate(_SOURCES):
            ax = axes[row][col]
            for (name, mode), values in sorted(_series(doc, shape, dtype, source, "median_s").items()):
                xs, ys = zip(*values)
                ax.plot(xs, [y * 1e3 for y in ys], color=_COLORS[name], linestyle=_STYLES[mode],
                        marker=_MARKERS[mode], markersize=4)
            _decorate(ax, f"{source} backends, {dtype}", "median latency per call (ms)", doc["config"]["tokens"])
    fig.suptitle(_title(doc, shape), fontsize=10)
    _legend(fig, doc["config"]["modes"])
    return _save(fig, path)


def _memory(doc: dict, path: str) -> str:
    """Peak bytes allocated in a call vs tokens (transformers, uncompiled and default), with batched_mm's gather."""
    plt = _pyplot()
    shapes, dtypes = _shapes(doc), doc["config"]["dtypes"]
    fig, axes = plt.subplots(len(dtypes), len(shapes), figsize=(6.5 * len(shapes), 4.6 * len(dtypes)),
                             squeeze=False)
    for row, dtype in enumerate(dtypes):
        for col, shape in enumerate(shapes):
            ax = axes[row][col]
            for (name, mode), values in sorted(_series(doc, shape, dtype, "transformers", "peak_bytes").items()):
                if mode in ("uncompiled", "default"):
                    xs, ys = zip(*values)
                    ax.plot(xs, [max(y, 1) / 2**20 for y in ys], color=_COLORS[name], linestyle=_STYLES[mode],
                            marker=_MARKERS[mode], markersize=4)
            predicted = sorted({(p["tokens"], p["predicted_gather_bytes"]) for p in doc["points"]
                                if p["shape"] == shape and p["dtype"] == dtype and "predicted_gather_bytes" in p})
            if predicted:
                xs, ys = zip(*predicted)
                ax.plot(xs, [y / 2**20 for y in ys], color="black", linestyle=":", linewidth=1)
            _decorate(ax, f"transformers backends, {shape}, {dtype}", "peak MiB allocated during a call",
                      doc["config"]["tokens"])
    env = doc["environment"]
    fig.suptitle(f"Peak memory per call on {env.get('device_name')}\n({doc['memory_method']})", fontsize=9)
    from matplotlib.lines import Line2D

    copies = Line2D([], [], color="black", linestyle=":", label="batched_mm's weight copies: T*K*3*H*I*bytes")
    _legend(fig, [m for m in ("uncompiled", "default") if m in doc["config"]["modes"]], extra=[copies])
    return _save(fig, path)


def _roofline(doc: dict, shape: str, path: str) -> str:
    """Fraction of the roofline time reached vs tokens (transformers backends), one panel per dtype."""
    plt = _pyplot()
    dtypes = doc["config"]["dtypes"]
    fig, axes = plt.subplots(1, len(dtypes), figsize=(max(10, 7 * len(dtypes)), 5), squeeze=False)
    for col, dtype in enumerate(dtypes):
        ax = axes[0][col]
        for (name, mode), values in sorted(_series(doc, shape, dtype, "transformers", "roofline_fraction").items()):
            xs, ys = zip(*values)
            ax.plot(xs, ys, color=_COLORS[name], linestyle=_STYLES[mode], marker=_MARKERS[mode], markersize=4)
        _decorate(ax, f"transformers backends, {dtype}", "fraction of roofline (1 = at the ceiling)",
                  doc["config"]["tokens"])
    _legend(fig, doc["config"]["modes"])
    ceilings = doc.get("ceilings") or {}
    fig.suptitle(_title(doc, shape) + f"\nceilings: copy {ceilings.get('copy_bytes_per_s', 0) / 1e12:.2f} TB/s, "
                 + ", ".join(f"{k} matmul {v / 1e12:.0f} TFLOP/s"
                             for k, v in ceilings.get("matmul_flops_per_s", {}).items()), fontsize=9)
    return _save(fig, path)


def _decorate(ax, title: str, ylabel: str, tokens) -> None:
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(tokens), [str(t) for t in tokens])
    ax.xaxis.set_minor_locator(_null_locator())
    ax.set_xlabel("tokens per call")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)


def _null_locator():
    from matplotlib.ticker import NullLocator

    return NullLocator()


def _legend(fig, modes, extra=()) -> None:
    """One legend under the panels: colour = backend, line style and marker = compile setting."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=color, linewidth=3, label=name) for name, color in _COLORS.items()]
    handles += [Line2D([], [], color="gray", linestyle=_STYLES[m], marker=_MARKERS[m], label=m) for m in modes]
    handles += list(extra)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=8, frameon=False)


def _save(fig, path: str) -> str:
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
