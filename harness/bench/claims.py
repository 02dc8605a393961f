"""The documentation's performance claims, checked against benchmark results: verdict, numbers, device, versions."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.config.vocabulary import MODES

SOURCE = "transformers"  # the claims are about transformers' backends
NAMES = ("eager", "batched_mm", "grouped_mm")
SMALL_MAX = 16  # "small inputs": at most this many tokens
LARGE_MIN = 256  # "larger inputs": at least this many tokens
DECODE_TOKENS = (1, 4, 16, 64)  # decode steps: one token per sequence, batch sizes up to 64
TIE = 0.05  # medians within 5 % of each other are a tie
SIGNIFICANT = 1.5  # "significantly slower": at least 1.5x the other's median
DEFINITIONS = (f"small inputs: <= {SMALL_MAX} tokens; larger inputs: >= {LARGE_MIN} tokens; decode: "
               f"{', '.join(map(str, DECODE_TOKENS))} tokens (one per sequence); a tie: medians within "
               f"{TIE:.0%}; significantly slower: >= {SIGNIFICANT}x the median. Backends are transformers' "
               f"functions; comparisons are between backends under the same compile setting; '-' = not measured "
               f"(batched_mm: its weight copies would exceed the memory limit; other reasons are in the JSON).")


@dataclass
class Claim:
    """One claim's check: the documentation's words, the verdict and the evidence."""

    device: str
    title: str
    quote: str
    verdict: str = "untested"  # true | false | partly | untested
    summary: str = ""
    columns: tuple[str, ...] = ()
    rows: list[tuple] = field(default_factory=list)
    counts: dict = field(default_factory=lambda: {"holds": 0, "tie": 0, "fails": 0})

    by_mode: dict = field(default_factory=dict)

    def tally(self, outcome: str, mode: str) -> None:
        """Count one comparison (holds, tie or fails) under a compile setting."""
        self.counts[outcome] += 1
        per_mode = self.by_mode.setdefault(mode, {"holds": 0, "tie": 0, "fails": 0})
        per_mode[outcome] += 1

    def decide(self) -> None:
        """Verdict from the tally: true (no failure), false (no success), partly (both), untested (nothing)."""
        holds, ties, fails = self.counts["holds"], self.counts["tie"], self.counts["fails"]
        if holds + ties + fails == 0:
            self.verdict = "untested"
        elif fails == 0 and holds > 0:
            self.verdict = "true"
        elif holds == 0 and ties == 0:
            self.verdict = "false"
        else:
            self.verdict = "partly"
        tally = f"{holds} of {holds + ties + fails} comparisons hold, {ties} ties, {fails} fail"
        if len(self.by_mode) > 1:
            tally += " (hold/tie/fail by compile setting: " + ", ".join(
                f"{mode} {c['holds']}/{c['tie']}/{c['fails']}" for mode, c in
                sorted(self.by_mode.items(), key=lambda kv: MODES.index(kv[0]) if kv[0] in MODES else 99)) + ")"
        self.summary = f"{tally}. {self.summary}".strip()


def medians(doc: dict) -> dict:
    """{(shape, dtype, mode): {name: {tokens: median_s}}} for transformers' ok points."""
    table: dict = {}
    for point in doc["points"]:
        if point["status"] == "ok" and point["source"] == SOURCE:
            key = (point["shape"], point["dtype"], point["mode"])
            table.setdefault(key, {}).setdefault(point["backend"], {})[point["tokens"]] = point["median_s"]
    return table


def compare(a: float, b: float) -> str:
    """'faster' if a beats b by more than the tie margin, 'slower' if b beats a, else 'tie'."""
    if a * (1 + TIE) < b:
        return "faster"
    if b * (1 + TIE) < a:
        return "slower"
    return "tie"


def fastest_outcome(times: dict[str, float], name: str) -> str | None:
    """holds if `name` beats every other backend measured, tie if none beats it, fails otherwise; None if alone."""
    others = [t for other, t in times.items() if other != name]
    if name not in times or not others:
        return None
    results = [compare(times[name], t) for t in others]
    if "slower" in results:
        return "fails"
    return "tie" if "tie" in results else "holds"


def cudagraph_notes(doc: dict) -> list[str]:
    """Per transformers item in a CUDA-graph mode: token counts run, CUDA-graph replays seen, skips, graph breaks."""
    notes = []
    for item in doc["items"]:
        counters = item.get("compile_counters")
        if item["mode"] in ("reduce-overhead", "max-autotune") and item["source"] == SOURCE and counters:
            points = [p for p in doc["points"] if p["status"] == "ok" and p["shape"] == item["shape"]
                      and p["dtype"] == item["dtype"] and p["source"] == item["source"]
                      and p["backend"] == item["backend"] and p["mode"] == item["mode"]]
            replayed = sum(1 for p in points if p.get("cudagraph_launches"))
            launches = (f"{replayed} of them launched CUDA graphs (cudaGraphLaunch in the profile)"
                        if any("cudagraph_launches" in p for p in points) else "launches not recorded")
            notes.append(f"{item['source']}-{item['backend']} {item['mode']} {item['shape']} {item['dtype']}: {len(points)} token "
                         f"counts ran, {launches}, {counters['cudagraph_skips']} CUDA-graph skips, "
                         f"{counters['graph_breaks']} graph breaks")
    return notes


def grouped_mm_paths(doc: dict) -> list[str]:
    """Which grouped_mm kernel transformers' grouped_mm ran (profiler evidence), per dtype and compile setting."""
    paths: dict = {}
    for point in doc["points"]:
        if point["status"] == "ok" and point["source"] == SOURCE and point["backend"] == "grouped_mm":
            paths.setdefault((point["dtype"], point["mode"]), set()).add(point.get("grouped_mm_path") or "unknown")
    return [f"{dtype} {mode}: {', '.join(sorted(found))}" for (dtype, mode), found in sorted(paths.items())]


def check_all(docs: dict[str, dict]) -> list[Claim]:
    """Every claim that the results of each device can answer (docs: device -> results document)."""
    claims = []
    if "cuda" in docs:
        table = medians(docs["cuda"])
        claims += [_fastest(table, "cuda", "batched_mm", lambda t: t <= SMALL_MAX,
                            "batched_mm is fastest for small inputs (GPU)",
                            "batched_mm: Fastest for small inputs, especially with compilation."),
                   _fastest(table, "cuda", "grouped_mm", lambda t: t >= LARGE_MIN,
                            "grouped_mm is best for larger inputs (GPU)", "grouped_mm: Best for larger inputs"),
                   _crossover(table), _decode_switch(table),
                   _memory(docs["cuda"], "cuda")]
    if "cpu" in docs:
        table = medians(docs["cpu"])
        claims += [_fastest(table, "cpu", "grouped_mm", lambda t: True,
                            "grouped_mm is the most efficient backend for all input sizes (CPU)",
                            "grouped_mm: Most efficient backend for all input sizes. / On CPU, grouped_mm remains "
                            "active throughout generation as it is more efficient for all input sizes."),
                   _significantly_slower(table), _eager_between(table), _memory(docs["cpu"], "cpu")]
    return claims


def _fastest(table, device, name, in_range, title, quote) -> Claim:
    """`name` has the lowest median among the backends measured, at every token count `in_range` accepts."""
    claim = Claim(device, title, quote, columns=("shape", "dtype", "mode", "tokens", *_ms_columns(), "result"))
    for (shape, dtype, mode), by_name in sorted(table.items()):
        for tokens in _tokens(by_name):
            times = {n: by_name[n][tokens] for n in NAMES if tokens in by_name.get(n, {})}
            outcome = fastest_outcome(times, name) if in_range(tokens) else None
            if outcome:
                claim.tally(outcome, mode)
                claim.rows.append((shape, dtype, mode, tokens, *_ms(times), outcome))
    claim.decide()
    return claim


def _crossover(table) -> Claim:
    """Where grouped_mm overtakes batched_mm, per shape, dtype and compile setting."""
    claim = Claim("cuda", "Crossover from batched_mm to grouped_mm (GPU)",
                  "batched_mm fastest for small inputs, grouped_mm best for larger inputs: where is the switch?",
                  columns=("shape", "dtype", "mode", "batched_mm faster up to", "grouped_mm faster from",
                           "tokens compared", "result"))
    for (shape, dtype, mode), by_name in sorted(table.items()):
        common = sorted(set(by_name.get("batched_mm", {})) & set(by_name.get("grouped_mm", {})))
        if len(common) < 2:
            continue
        batched_wins = [t for t in common if by_name["batched_mm"][t] < by_name["grouped_mm"][t]]
        last_batched = max(batched_wins) if batched_wins else None
        later = [t for t in common if last_batched is not None and t > last_batched]
        first_grouped = min(later) if later else None
        clean = bool(batched_wins) and batched_wins == common[:len(batched_wins)] and first_grouped is not None
        outcome = "holds" if clean else "fails"
        claim.tally(outcome, mode)
        claim.rows.append((shape, dtype, mode, _tok(last_batched), _tok(first_grouped),
                           f"{common[0]}..{common[-1]}", outcome if clean else _why_no_crossover(batched_wins, common)))
    claim.summary = ("'holds' = batched_mm wins at the smallest token counts, grouped_mm at every larger one "
                     "(one clean crossover inside the measured range).")
    claim.decide()
    return claim


def _why_no_crossover(batched_wins: list[int], common: list[int]) -> str:
    if not batched_wins:
        return "fails: grouped_mm faster everywhere"
    if batched_wins == common:
        return "fails: batched_mm faster everywhere measured"
    return "fails: no single crossover"


def _decode_switch(table) -> Claim:
    """grouped_mm time / batched_mm time at decode token counts, same compile setting; > 1 means the switch helps."""
    claim = Claim("cuda", "The decode-time switch from grouped_mm to batched_mm pays off (GPU)",
                  "When using grouped_mm on GPU, the model automatically switches to batched_mm during the decode "
                  "stage ... batched_mm is significantly faster on lower token count during decoding on GPU.",
                  columns=("shape", "dtype", "mode", "tokens", "grouped_mm ms", "batched_mm ms", "speed-up",
                           "result"))
    for (shape, dtype, mode), by_name in sorted(table.items()):
        for tokens in DECODE_TOKENS:
            grouped = by_name.get("grouped_mm", {}).get(tokens)
            batched = by_name.get("batched_mm", {}).get(tokens)
            if grouped is None or batched is None:
                continue
            outcome = {"faster": "holds", "tie": "tie", "slower": "fails"}[compare(batched, grouped)]
            claim.tally(outcome, mode)
            claim.rows.append((shape, dtype, mode, tokens, _fmt_ms(grouped), _fmt_ms(batched),
                               f"{grouped / batched:.2f}x", outcome))
    claim.rows += _decode_best_pairing(table)
    claim.summary = ("Rows with mode 'generate default' pair batched_mm under reduce-overhead (transformers' "
                     "CompileConfig default for decoding) with grouped_mm's fastest setting; they are shown, "
                     "not counted.")
    claim.decide()
    return claim


def _decode_best_pairing(table) -> list[tuple]:
    """batched_mm under reduce-overhead vs grouped_mm at its best working setting, per shape and dtype."""
    rows = []
    keys = sorted({(shape, dtype) for shape, dtype, _ in table})
    for shape, dtype in keys:
        batched = table.get((shape, dtype, "reduce-overhead"), {}).get("batched_mm", {})
        for tokens in DECODE_TOKENS:
            grouped = [by_name["grouped_mm"][tokens] for (s, d, _), by_name in table.items()
                       if (s, d) == (shape, dtype) and tokens in by_name.get("grouped_mm", {})]
            if tokens in batched and grouped:
                best = min(grouped)
                rows.append((shape, dtype, "generate default", tokens, _fmt_ms(best), _fmt_ms(batched[tokens]),
                             f"{best / batched[tokens]:.2f}x", "(shown)"))
    return rows


def _significantly_slower(table) -> Claim:
    """batched_mm's median is at least SIGNIFICANT times eager's and grouped_mm's."""
    claim = Claim("cpu", "batched_mm is significantly slower than the other backends (CPU)",
                  "batched_mm: Not recommended (significantly slower than other backends).",
                  columns=("shape", "dtype", "mode", "tokens", *_ms_columns(), "vs eager", "vs grouped_mm",
                           "result"))
    for (shape, dtype, mode), by_name in sorted(table.items()):
        for tokens in _tokens(by_name):
            times = {n: by_name[n][tokens] for n in NAMES if tokens in by_name.get(n, {})}
            if "batched_mm" not in times or len(times) < 2:
                continue
            ratios = [times["batched_mm"] / times[n] for n in ("eager", "grouped_mm") if n in times]
            if min(ratios) >= SIGNIFICANT:
                outcome = "holds"
            elif all(compare(times["batched_mm"], times[n]) == "slower" for n in times if n != "batched_mm"):
                outcome = "tie"  # slower, but not significantly
            else:
                outcome = "fails"
            claim.tally(outcome, mode)
            claim.rows.append((shape, dtype, mode, tokens, *_ms(times), *_ratio(times, "eager"),
                               *_ratio(times, "grouped_mm"), outcome))
    claim.summary = "Here 'tie' means slower than both, but less than significantly."
    claim.decide()
    return claim


def _ratio(times: dict, other: str) -> tuple[str]:
    if other not in times or "batched_mm" not in times:
        return ("-",)
    return (f"{times['batched_mm'] / times[other]:.2f}x",)


def _eager_between(table) -> Claim:
    """grouped_mm < eager < batched_mm in median latency."""
    claim = Claim("cpu", "eager is slower than grouped_mm but faster than batched_mm (CPU)",
                  "eager: Slower than grouped_mm but faster than batched_mm.",
                  columns=("shape", "dtype", "mode", "tokens", *_ms_columns(), "result"))
    for (shape, dtype, mode), by_name in sorted(table.items()):
        for tokens in _tokens(by_name):
            times = {n: by_name[n][tokens] for n in NAMES if tokens in by_name.get(n, {})}
            if "eager" not in times or len(times) < 2:
                continue
            results = []
            if "grouped_mm" in times:
                results.append(compare(times["grouped_mm"], times["eager"]))
            if "batched_mm" in times:
                results.append(compare(times["eager"], times["batched_mm"]))
            outcome = "fails" if "slower" in results else ("tie" if "tie" in results else "holds")
            claim.tally(outcome, mode)
            claim.rows.append((shape, dtype, mode, tokens, *_ms(times), outcome))
    claim.decide()
    return claim


def _memory(doc: dict, device: str) -> Claim:
    """batched_mm's peak memory per call against grouped_mm's, and its growth per token."""
    claim = Claim(device, f"batched_mm uses more memory ({'GPU' if device == 'cuda' else 'CPU'})",
                  "batched_mm: Uses more memory due to parameter duplication. / grouped_mm: more memory efficient "
                  "as it avoids duplicating expert parameters.",
                  columns=("shape", "dtype", "mode", "tokens", "batched_mm MiB", "grouped_mm MiB", "eager MiB",
                           "ratio", "result"))
    peaks: dict = {}
    predicted = {(p["shape"], p["dtype"]): p["predicted_gather_bytes"] / p["tokens"] for p in doc["points"]
                 if p.get("predicted_gather_bytes")}
    for point in doc["points"]:
        if point["status"] == "ok" and point["source"] == SOURCE and point["mode"] in ("uncompiled", "default"):
            key = (point["shape"], point["dtype"], point["mode"])
            peaks.setdefault(key, {}).setdefault(point["backend"], {})[point["tokens"]] = point["peak_bytes"]
    slopes = []
    for (shape, dtype, mode), by_name in sorted(peaks.items()):
        batched, grouped = by_name.get("batched_mm", {}), by_name.get("grouped_mm", {})
        for tokens in sorted(set(batched) & set(grouped)):
            outcome = "holds" if batched[tokens] > grouped[tokens] * (1 + TIE) else (
                "tie" if batched[tokens] >= grouped[tokens] / (1 + TIE) else "fails")
            claim.tally(outcome, mode)
            eager = by_name.get("eager", {}).get(tokens)
            claim.rows.append((shape, dtype, mode, tokens, _mib(batched[tokens]), _mib(grouped[tokens]),
                               _mib(eager) if eager is not None else "-",
                               f"{batched[tokens] / max(grouped[tokens], 1):.1f}x", outcome))
        if len(batched) >= 2 and len(grouped) >= 2:
            copies = predicted.get((shape, dtype))
            slopes.append(f"{shape} {dtype} {mode}: batched_mm {_slope(batched) / 2**20:.3g} MiB/token"
                          + (f" (its weight copies: {copies / 2**20:.3g} MiB/token)" if copies else "")
                          + f", grouped_mm {_slope(grouped) / 2**20:.3g} MiB/token")
    claim.summary = ("Growth of the peak with tokens (least-squares slope): " + "; ".join(slopes) + "."
                     if slopes else "")
    claim.decide()
    return claim


def _slope(series: dict[int, float]) -> float:
    """Least-squares slope of bytes against tokens."""
    xs, ys = list(series), list(series.values())
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var if var else 0.0


def crossovers(table: dict) -> dict:
    """{(shape, dtype, mode): (batched_mm faster up to, grouped_mm faster from)} where both are known."""
    out = {}
    for row in _crossover(table).rows:
        out[row[:3]] = (row[3], row[4])
    return out


def _tokens(by_name: dict) -> list[int]:
    return sorted({tokens for series in by_name.values() for tokens in series})


def _ms_columns() -> tuple[str, ...]:
    return tuple(f"{name} ms" for name in NAMES)


def _ms(times: dict[str, float]) -> tuple[str, ...]:
    return tuple(_fmt_ms(times[name]) if name in times else "-" for name in NAMES)


def _fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _mib(value: float) -> str:
    return f"{value / 2**20:.3g}" if value < 100 * 2**20 else f"{value / 2**20:.0f}"


def _tok(value) -> str:
    return "-" if value is None else str(value)
