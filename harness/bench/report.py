"""Regenerate reports/bench from its JSON: plots, CLAIMS.md and README.md (the main plot and table)."""

from __future__ import annotations

import os
from collections import Counter

from harness.bench.claims import DEFINITIONS, NAMES, Claim, check_all, cudagraph_notes, grouped_mm_paths
from harness.bench.merge import merge_runs
from harness.bench.results import find_results, load_bench

REGENERATE = "python -m harness bench --report {folder}   (or: nox -s benchmark -- --report {folder})"
_TABLE_MODES = ("uncompiled", "default")
GPU_COMMANDS = ("python -m harness bench --device cuda --out DIR --no-plots",
                "python -m harness bench --device cuda --out DIR --no-plots --tag autotune "
                "--modes max-autotune-no-cudagraphs,max-autotune")


def write_report(folder: str, *, plots: bool = True) -> list[str]:
    """Write CLAIMS.md, README.md and (if `plots`) the PNGs for every bench-<device>.json in `folder`."""
    docs = {device: merge_runs([_load(path) for path in paths]) for device, paths in find_results(folder).items()}
    figures: dict[str, list[str]] = {}
    if plots:
        from harness.bench.plot import plot_all

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


def _load(path: str) -> dict:
    """A results file with its name and counts of point and item statuses (kept in the merged `runs`)."""
    doc = load_bench(path)
    doc["file"] = os.path.basename(path)
    doc["point_counts"] = dict(Counter(point["status"] for point in doc["points"]))
    doc["items_skipped"] = sum(1 for item in doc["items"] if item["status"] == "skipped")
    return doc


def _run_lines(doc: dict) -> list[str]:
    """Per run of a device: file, device, versions, date, completeness, what it measured and the load."""
    lines = []
    for run in doc["runs"]:
        env = run["environment"]
        text = (f"**{run['file']}**: {env.get('device_name')}, torch {env.get('torch')}, transformers "
                f"{env.get('transformers')}, Python {env.get('python')}, {env.get('torch_threads')} torch threads; "
                f"started {run['started']}, {'complete' if run['complete'] else 'INCOMPLETE'}; compile settings "
                f"{', '.join(run['config']['modes'])}; points: "
                + ", ".join(f"{n} {s}" for s, n in sorted(run["point_counts"].items()))
                + f"; items skipped (time budget, see the JSON): {run['items_skipped']}; harness "
                  f"{env.get('harness_git_sha')}")
        if run["device"] == "cpu":
            text += (f". Load average before/after: {run.get('loadavg_before')} / {run.get('loadavg_after')} "
                     f"(the machine may have been loaded by other work)")
        lines.append(f"- {text}")
    return lines


def _versions(doc: dict) -> str:
    env = doc["environment"]
    return f"{env.get('device_name')}, torch {env.get('torch')}, transformers {env.get('transformers')}"


def render_claims(docs: dict, claims: list[Claim], folder: str) -> str:
    """CLAIMS.md: a summary table, then each claim with its verdict, numbers, device and versions."""
    lines = ["# The documentation's performance claims, checked", "",
             f"Generated from {', '.join(run['file'] for doc in docs.values() for run in doc['runs'])} by "
             f"`{REGENERATE.format(folder=folder)}`;"
             " do not edit by hand.", "",
             "Claims: the GPU/CPU guidance table and the decode note of transformers' experts-backends page "
             "(docs/source/en/experts_interface.md, shared/seeds/000_*.txt).", "", f"Definitions: {DEFINITIONS}", "",
             "## Runs", ""]
    lines += [line for doc in docs.values() for line in _run_lines(doc)]
    lines += ["", "## Summary", "", "| device | claim | verdict | comparisons |", "|---|---|---|---|"]
    for claim in claims:
        c = claim.counts
        lines.append(f"| {claim.device} | {claim.title} | **{claim.verdict}** | "
                     f"{c['holds']} hold, {c['tie']} tie, {c['fails']} fail |")
    lines += ["", "## Observations that qualify the numbers", ""]
    for device, doc in docs.items():
        lines += [f"- {device}: transformers' grouped_mm ran the kernel "
                  + "; ".join(grouped_mm_paths(doc)) + " (native = torch's grouped_mm, fallback = transformers' "
                  "per-expert torch.mm loop, which it uses under torch.compile for dtypes other than bfloat16)."]
    if "cuda" in docs and cudagraph_notes(docs["cuda"]):
        lines += ["- cuda, CUDA-graph settings: the documentation says grouped_mm is not compatible with CUDA graphs "
                  "(a compile-support claim, checked by the compile matrix); what ran here:"]
        lines += [f"  - {note}" for note in cudagraph_notes(docs["cuda"])]
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
             "Re-measure: on CPU `nox -s benchmark` (or `python -m harness bench --device cpu`); on a GPU machine "
             f"(up to about 8 minutes each) `{GPU_COMMANDS[0]}` and `{GPU_COMMANDS[1]}`, then copy "
             "DIR/bench-cuda*.json here and regenerate.", "", "## Runs", ""]
    lines += [line for doc in docs.values() for line in _run_lines(doc)]
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
    lines += [f"- {run['file']}: raw results (every point, skipped ones with their reason)"
              for doc in docs.values() for run in doc["runs"]]
    lines += [f"- [{name}]({name})" for files in figures.values() for name in files]
    return "\n".join(lines) + "\n"


def _sizes(doc: dict) -> str:
    shapes = "; ".join(f"{s['name']}: {s['note']}" for s in doc["config"]["shapes"])
    cfg = doc["config"]
    return (f"Sizes: {shapes}. Tokens {', '.join(map(str, cfg['tokens']))}; dtypes {', '.join(cfg['dtypes'])}; "
            f"compile settings {', '.join(cfg['modes'])}; time budget {cfg['budget_s']:.0f} s. Median ms per call, "
            f"transformers backends; 'skip' = point not run (memory limit, time budget or per-call limit), '-' = "
            f"setting not run (time budget), 'err' = failed (reasons in the JSON).")


def _main_table(doc: dict) -> list[str]:
    """Per shape and dtype: rows are token counts, columns backend x (uncompiled, default)."""
    cells: dict = {}
    for point in doc["points"]:
        if point["source"] == "transformers" and point["mode"] in _TABLE_MODES:
            value = (f"{point['median_s'] * 1e3:.3g}" if point["status"] == "ok"
                     else "skip" if point["status"] == "skipped" else "err")
            cells[(point["shape"], point["dtype"], point["tokens"], point["backend"], point["mode"])] = value
    lines = []
    columns = [(name, mode) for name in NAMES for mode in _TABLE_MODES]
    for shape in doc["config"]["shapes"]:
        for dtype in doc["config"]["dtypes"]:
            rows = [(t, *[cells.get((shape["name"], dtype, t, n, m), "-") for n, m in columns])
                    for t in doc["config"]["tokens"]]
            if any(cell != "-" for row in rows for cell in row[1:]):
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
