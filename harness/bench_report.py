"""Regenerate reports/bench from its JSON: plots, CLAIMS.md and README.md (the main plot and table)."""

from __future__ import annotations

import os

from harness.bench_claims import DEFINITIONS, NAMES, Claim, check_all
from harness.bench_results import find_results, load_bench

REGENERATE = "python -m harness bench --report {folder}   (or: nox -s benchmark -- --report {folder})"
_TABLE_MODES = ("uncompiled", "default")


def write_report(folder: str, *, plots: bool = True) -> list[str]:
    """Write CLAIMS.md, README.md and (if `plots`) the PNGs for every bench-<device>.json in `folder`."""
    docs = {device: load_bench(path) for device, path in find_results(folder).items()}
    figures: dict[str, list[str]] = {}
    if plots:
        from harness.bench_plot import plot_all

        figures = {device: plot_all(doc, folder) for device, doc in docs.items()}
    claims = check_all(docs)
    written = []
    for name, text in (("CLAIMS.md", render_claims(docs, claims, folder)),
                       ("README.md", render_readme(docs, claims, figures, folder))):
        path = os.path.join(folder, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        written.append(name)
    return written + [f for files in figures.values() for f in files]


def _run_line(doc: dict) -> str:
    """Device, versions, date, completeness and load of one run."""
    env = doc["environment"]
    counts: dict[str, int] = {}
    for point in doc["points"]:
        counts[point["status"]] = counts.get(point["status"], 0) + 1
    skipped_items = sum(1 for item in doc["items"] if item["status"] == "skipped")
    text = (f"**{doc['device']}**: {env.get('device_name')}, torch {env.get('torch')}, transformers "
            f"{env.get('transformers')}, Python {env.get('python')}, {env.get('torch_threads')} torch threads; "
            f"run started {doc['started']}, {'complete' if doc['complete'] else 'INCOMPLETE'}; points: "
            + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            + f"; items skipped: {skipped_items}; harness {env.get('harness_git_sha')}")
    if doc["device"] == "cpu":
        text += (f". Load average before/after: {doc.get('loadavg_before')} / {doc.get('loadavg_after')} "
                 f"(the machine may have been loaded by other work)")
    return text


def _versions(doc: dict) -> str:
    env = doc["environment"]
    return f"{env.get('device_name')}, torch {env.get('torch')}, transformers {env.get('transformers')}"


def render_claims(docs: dict, claims: list[Claim], folder: str) -> str:
    """CLAIMS.md: a summary table, then each claim with its verdict, numbers, device and versions."""
    lines = ["# The documentation's performance claims, checked", "",
             f"Generated from {', '.join(f'bench-{d}.json' for d in docs)} by `{REGENERATE.format(folder=folder)}`;"
             " do not edit by hand.", "",
             "Claims: the GPU/CPU guidance table and the decode note of transformers' experts-backends page "
             "(docs/source/en/experts_interface.md, shared/seeds/000_*.txt).", "", f"Definitions: {DEFINITIONS}", "",
             "## Runs", ""]
    lines += [f"- {_run_line(doc)}" for doc in docs.values()]
    lines += ["", "## Summary", "", "| device | claim | verdict | comparisons |", "|---|---|---|---|"]
    for claim in claims:
        c = claim.counts
        lines.append(f"| {claim.device} | {claim.title} | **{claim.verdict}** | "
                     f"{c['holds']} hold, {c['tie']} tie, {c['fails']} fail |")
    for claim in claims:
        lines += ["", f"## {claim.title}: **{claim.verdict}**", "", f"> {claim.quote}", "",
                  f"Device and versions: {_versions(docs[claim.device])}.", "", claim.summary, ""]
        if claim.rows:
            lines += _table(claim.columns, claim.rows)
        else:
            lines.append("No data to compare (the run did not measure the backends this claim needs).")
    return "\n".join(lines) + "\n"


def render_readme(docs: dict, claims: list[Claim], figures: dict, folder: str) -> str:
    """README.md of reports/bench: main plot, main table per device, verdicts, files and how to regenerate."""
    main_device = "cuda" if "cuda" in docs else next(iter(docs))
    main_shape = docs[main_device]["config"]["shapes"][0]["name"]
    lines = ["# Experts backends: latency and memory", "",
             f"![median latency vs tokens, {main_device}, {main_shape}](latency-{main_device}-{main_shape}.png)", "",
             f"Main plot: median latency per call of every backend and compile setting against tokens per call "
             f"(log-log), {main_device}, {main_shape}. Checked claims: [CLAIMS.md](CLAIMS.md).", "",
             "Regenerate plots, CLAIMS.md and this file from the committed JSON:", "",
             f"    {REGENERATE.format(folder=folder)}", "",
             "Re-measure: `python -m harness bench --device cpu --out reports/bench` (or `nox -s benchmark`), and "
             "on a GPU machine `python -m harness bench --device cuda --out DIR`, then copy DIR/bench-cuda.json "
             "here and regenerate.", "", "## Runs", ""]
    lines += [f"- {_run_line(doc)}" for doc in docs.values()]
    lines += ["", "## Verdicts", "", "| device | claim | verdict |", "|---|---|---|"]
    lines += [f"| {c.device} | {c.title} | **{c.verdict}** |" for c in claims]
    for device, doc in docs.items():
        lines += ["", f"## Main table: {device}", "", _sizes(doc), ""]
        lines += _main_table(doc)
    lines += ["", "## Protocol", ""]
    for device, doc in docs.items():
        lines += [f"- {device}: {doc['protocol']}. Peak memory: {doc['memory_method']}. Roofline (GPU): bytes of "
                  f"the expert weights the routing selects / copy bandwidth vs FLOPs / matmul rate. Ceilings: "
                  f"{_ceilings(doc)}."]
    lines += ["", "## Files", ""]
    lines += [f"- bench-{d}.json: raw results (every point, skipped ones with their reason)" for d in docs]
    lines += [f"- [{name}]({name})" for files in figures.values() for name in files]
    return "\n".join(lines) + "\n"


def _sizes(doc: dict) -> str:
    shapes = "; ".join(f"{s['name']}: {s['note']}" for s in doc["config"]["shapes"])
    cfg = doc["config"]
    return (f"Sizes: {shapes}. Tokens {', '.join(map(str, cfg['tokens']))}; dtypes {', '.join(cfg['dtypes'])}; "
            f"compile settings {', '.join(cfg['modes'])}; time budget {cfg['budget_s']:.0f} s. Median ms per call, "
            f"transformers backends; 'skip' = not run (memory limit, time budget or per-call limit), 'err' = "
            f"failed (see the JSON).")


def _main_table(doc: dict) -> list[str]:
    """Per shape and dtype: rows are token counts, columns backend x (uncompiled, default)."""
    cells: dict = {}
    for point in doc["points"]:
        if point["source"] == "transformers" and point["mode"] in _TABLE_MODES:
            value = (f"{point['median_s'] * 1e3:.3g}" if point["status"] == "ok"
                     else "skip" if point["status"] == "skipped" else "err")
            cells[(point["shape"], point["dtype"], point["tokens"], point["name"], point["mode"])] = value
    lines = []
    columns = [(name, mode) for name in NAMES for mode in _TABLE_MODES]
    for shape in doc["config"]["shapes"]:
        for dtype in doc["config"]["dtypes"]:
            rows = [(t, *[cells.get((shape["name"], dtype, t, n, m), "") for n, m in columns])
                    for t in doc["config"]["tokens"]]
            if any(any(row[1:]) for row in rows):
                lines += ["", f"**{shape['name']}, {dtype}**", ""]
                lines += _table(("tokens", *[f"{n} {m}" for n, m in columns]), rows)
    return lines


def _ceilings(doc: dict) -> str:
    ceilings = doc.get("ceilings")
    if not ceilings:
        return "not measured"
    rates = ", ".join(f"{k} {v / 1e12:.3g} TFLOP/s" for k, v in ceilings["matmul_flops_per_s"].items())
    return f"copy {ceilings['copy_bytes_per_s'] / 1e9:.0f} GB/s, matmul {rates} ({ceilings['method']})"


def _table(columns, rows) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines
