"""The benchmark code on tiny sizes: configuration, measurement, claims and report (never a real benchmark)."""

from __future__ import annotations

import json

import pytest
import torch

from harness.bench.claims import check_all, compare, fastest_outcome
from harness.bench.config import AUTOTUNE_MODES, BenchShape, Item, make_config, parse_shape, plan_items
from harness.config.vocabulary import MODES
from harness.bench.merge import merge_runs
from harness.bench.point import PointContext, measure_point
from harness.bench.report import write_report
from harness.bench.results import SCHEMA, load_bench
from harness.bench.subjects import build_experts
from harness.bench.timing import profile_call, summarize
from harness.errors import HarnessError
from tests.conftest import run_harness

TINY = "tiny=16x8x4x2"


# --- configuration --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, key", [
    ({"modes": ["reduce-overhead"]}, "--modes"),
    ({"modes": ["fast"]}, "--modes"),
    ({"dtypes": ["int8"]}, "--dtypes"),
    ({"backends": ["transformers-magic"]}, "--backends"),
    ({"backends": ["transformers:grouped_mm"]}, "--backends"),  # the old spelling: cell ids say source-backend
    ({"shapes": ["nope"]}, "--shapes"),
    ({"shapes": ["x=1x2x3"]}, "--shapes"),
    ({"shapes": ["x=8x4x2x3"]}, "--shapes"),  # top_k > experts
    ({"tokens": [0, 4]}, "--tokens"),
    ({"budget_s": -1}, "--budget-s"),
    ({"threads": 0}, "--threads"),
    ({"tag": "a/b"}, "--tag"),
])
def test_bad_configuration_is_a_harness_error(kwargs, key):
    with pytest.raises(HarnessError) as info:
        make_config("cpu", **kwargs)
    assert info.value.key == key


def test_custom_shape_and_its_cost_model():
    shape = parse_shape("t=16x8x4x2")
    assert shape == BenchShape("t", 16, 8, 4, 2, "custom: 16x8x4x2")
    assert shape.flops(3) == 2 * 3 * 2 * 3 * 16 * 8
    assert shape.batched_gather_bytes(3, 2) == 3 * 2 * 3 * 16 * 8 * 2


def test_plan_runs_the_claims_settings_first():
    config = make_config("cuda", dtypes=["bfloat16", "float32"], modes=list(MODES))
    items = plan_items(config)
    assert len(items) == 2 * 2 * 6 * 5
    assert {(i.source, i.mode, i.dtype) for i in items[:6]} == {("transformers", "uncompiled", "bfloat16")}
    assert items[6].mode == "uncompiled" and items[6].dtype == "float32"
    items = plan_items(make_config("cuda", modes=list(MODES)))
    autotune = [i for i in items if i.mode in AUTOTUNE_MODES]
    assert items[-len(autotune):] == autotune  # autotuning last
    assert [i.mode for i in autotune[:2]] == list(AUTOTUNE_MODES) and autotune[0].backend == autotune[1].backend
    assert items[-1].source == "reference"
    assert "max-autotune" not in make_config("cuda").modes  # a second, tagged run measures those


def test_cpu_defaults_are_stated_and_single_threaded():
    config = make_config("cpu")
    assert [s.name for s in config.shapes] == ["qwen1.5-moe-cpu", "mixtral-cpu"]
    assert config.threads == 1 and max(config.tokens) == 1024
    assert "reduce-overhead" not in config.modes


# --- measurement ----------------------------------------------------------------------------------------------

def test_summarize_quantiles():
    stats = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert stats["median_s"] == 3.0 and stats["min_s"] == 1.0 and stats["mean_s"] == 3.0
    assert stats["p90_s"] == pytest.approx(4.6)


def test_cpu_peak_counts_bytes_allocated_during_the_call():
    def call():
        a = torch.empty(2**18, dtype=torch.float32)  # 1 MiB
        b = torch.empty(2**18, dtype=torch.float32)  # both alive: 2 MiB
        del a
        return b

    names, peak = profile_call(call, "cpu")
    assert 2 * 2**20 <= peak < 3 * 2**20
    assert "aten::empty" in names


def _context(memory_limit=2**30, tokens=(1, 3)):
    config = make_config("cpu", shapes=[TINY], tokens=list(tokens), dtypes=["float32"], modes=["uncompiled"],
                         max_reps=3)
    shape = config.shapes[0]
    module = build_experts(shape, torch.float32, "cpu", 0)

    def reference(shape_, dtype, tokens_, inputs):
        from backends.reference import eager_experts_forward

        return eager_experts_forward(module, *inputs)

    return PointContext(config, lambda: None, None, memory_limit, reference), shape, module


@pytest.mark.parametrize("name", ["eager", "batched_mm", "grouped_mm"])
def test_reference_point_is_measured(name):
    ctx, shape, module = _context()
    from backends.reference import REFERENCE_BACKENDS

    point = measure_point(ctx, Item(shape.name, "float32", "reference", name, "uncompiled"), shape, module,
                          REFERENCE_BACKENDS[name], 3, cudagraphs=False)
    assert point["status"] == "ok", point
    assert point["reps"] == 3 and point["median_s"] > 0 and point["p90_s"] >= point["median_s"]
    assert point["max_rel_error"] < 1e-5 and point["peak_bytes"] > 0
    assert point["grouped_mm_path"] == ("native" if name == "grouped_mm" else None)  # torch >= 2.9 on CPU
    assert 0 < point["weight_bytes"] <= shape.experts * shape.expert_params() * 4


def test_batched_mm_over_the_memory_limit_is_skipped_with_its_size():
    ctx, shape, module = _context(memory_limit=10)
    from backends.reference import REFERENCE_BACKENDS

    point = measure_point(ctx, Item(shape.name, "float32", "reference", "batched_mm", "uncompiled"), shape, module,
                          REFERENCE_BACKENDS["batched_mm"], 3, cudagraphs=False)
    assert point["status"] == "skipped" and "memory limit" in point["reason"]
    assert point["predicted_gather_bytes"] == shape.batched_gather_bytes(3, 4)


def test_a_failing_backend_is_a_result():
    ctx, shape, module = _context()

    def broken(module, hidden_states, top_k_index, top_k_weights):
        raise RuntimeError("kernel exploded\nsecond line")

    point = measure_point(ctx, Item(shape.name, "float32", "reference", "eager", "uncompiled"), shape, module, broken,
                          1, cudagraphs=False)
    assert point["status"] == "error" and point["reason"] == "RuntimeError: kernel exploded"


# --- claims and report on synthetic results -------------------------------------------------------------------

def _doc(device, medians, peaks=None):
    """A results document with transformers points {(name, mode): {tokens: median_s}}."""
    points = []
    for (name, mode), series in medians.items():
        for tokens, median in series.items():
            points.append({"shape": "s", "dtype": "bfloat16", "source": "transformers", "backend": name,
                           "mode": mode, "tokens": tokens,
                           "status": "ok", "median_s": median, "p90_s": median * 1.1,
                           "peak_bytes": (peaks or {}).get(name, 1000) * tokens, "flops": 1})
    return {"schema": SCHEMA, "device": device, "complete": True, "started": "now", "argv": [],
            "environment": {"device_name": "X", "torch": "2.x", "transformers": "5.x"},
            "config": {"shapes": [{"name": "s", "note": "synthetic"}], "dtypes": ["bfloat16"],
                       "tokens": [1, 16, 256, 4096], "modes": ["uncompiled"], "budget_s": 1},
            "protocol": "p", "memory_method": "m", "items": [], "points": points}


def test_comparisons_have_a_tie_margin():
    assert compare(1.0, 1.2) == "faster" and compare(1.2, 1.0) == "slower" and compare(1.0, 1.03) == "tie"
    assert fastest_outcome({"a": 1.0, "b": 2.0}, "a") == "holds"
    assert fastest_outcome({"a": 1.0, "b": 1.01}, "a") == "tie"
    assert fastest_outcome({"a": 1.0}, "a") is None


def test_gpu_claims_on_a_clean_crossover():
    doc = _doc("cuda", {("batched_mm", "uncompiled"): {1: 1.0, 16: 2.0, 256: 9.0, 4096: 90.0},
                        ("grouped_mm", "uncompiled"): {1: 3.0, 16: 4.0, 256: 5.0, 4096: 20.0},
                        ("eager", "uncompiled"): {1: 5.0, 16: 6.0, 256: 8.0, 4096: 40.0}},
               peaks={"batched_mm": 50_000, "grouped_mm": 900, "eager": 800})
    claims = {c.title: c for c in check_all({"cuda": doc})}
    assert claims["batched_mm is fastest for small inputs (GPU)"].verdict == "true"
    assert claims["grouped_mm is best for larger inputs (GPU)"].verdict == "true"
    crossover = claims["Crossover from batched_mm to grouped_mm (GPU)"]
    assert crossover.verdict == "true" and crossover.rows[0][3:5] == ("16", "256")
    decode = claims["The decode-time switch from grouped_mm to batched_mm pays off (GPU)"]
    assert decode.verdict == "true" and decode.counts["holds"] == 2
    memory = claims["batched_mm uses more memory (GPU)"]
    assert memory.verdict == "true" and "MiB/token" in memory.summary


def test_cpu_claims_can_be_false_or_partly():
    doc = _doc("cpu", {("batched_mm", "uncompiled"): {1: 1.0, 256: 9.0},
                       ("grouped_mm", "uncompiled"): {1: 3.0, 256: 5.0},
                       ("eager", "uncompiled"): {1: 2.0, 256: 7.0}})
    claims = {c.title: c for c in check_all({"cpu": doc})}
    assert claims["grouped_mm is the most efficient backend for all input sizes (CPU)"].verdict == "partly"
    assert claims["batched_mm is significantly slower than the other backends (CPU)"].verdict == "partly"
    assert claims["eager is slower than grouped_mm but faster than batched_mm (CPU)"].verdict == "partly"


def test_report_from_json(tmp_path):
    doc = _doc("cpu", {("batched_mm", "uncompiled"): {1: 4.0, 16: 9.0},
                       ("grouped_mm", "uncompiled"): {1: 1.0, 16: 2.0},
                       ("eager", "uncompiled"): {1: 2.0, 16: 3.0}})
    (tmp_path / "bench-cpu.json").write_text(json.dumps(doc))
    written = write_report(str(tmp_path), plots=False)
    assert written == ["CLAIMS.md", "README.md"]
    claims = (tmp_path / "CLAIMS.md").read_text()
    assert "| cpu | grouped_mm is the most efficient backend for all input sizes (CPU) | **true** |" in claims
    assert "Device and versions: X, torch 2.x, transformers 5.x" in claims
    readme = (tmp_path / "README.md").read_text()
    assert "![median latency vs tokens, cpu, s](latency-cpu-s.png)" in readme
    pytest.importorskip("matplotlib")
    written = write_report(str(tmp_path), plots=True)
    assert {"latency-cpu-s.png", "memory-cpu.png"} <= set(written)
    assert (tmp_path / "latency-cpu-s.png").stat().st_size > 1000


def test_runs_of_one_device_merge(tmp_path):
    main = _doc("cuda", {("grouped_mm", "uncompiled"): {1: 1.0, 16: 2.0}})
    extra = _doc("cuda", {("grouped_mm", "uncompiled"): {16: 3.0}, ("grouped_mm", "max-autotune"): {1: 0.5}})
    extra["config"]["modes"] = ["max-autotune"]
    extra["points"].append({**extra["points"][0], "tokens": 1, "status": "error"})  # never replaces an ok point
    merged = merge_runs([main, extra])
    medians = {(p["mode"], p["tokens"]): p.get("median_s") for p in merged["points"]}
    assert medians == {("uncompiled", 1): 1.0, ("uncompiled", 16): 3.0, ("max-autotune", 1): 0.5}
    assert merged["config"]["modes"] == ["uncompiled", "max-autotune"] and len(merged["runs"]) == 2
    (tmp_path / "bench-cuda.json").write_text(json.dumps(main))
    (tmp_path / "bench-cuda-autotune.json").write_text(json.dumps(extra))
    write_report(str(tmp_path), plots=False)
    claims = (tmp_path / "CLAIMS.md").read_text()
    assert "Generated from bench-cuda.json, bench-cuda-autotune.json" in claims


def test_bad_results_files_are_harness_errors(tmp_path):
    bad = tmp_path / "bench-cpu.json"
    bad.write_text("{not json")
    with pytest.raises(HarnessError, match="not valid JSON"):
        load_bench(str(bad))
    bad.write_text(json.dumps({"schema": "other"}))
    with pytest.raises(HarnessError, match="not a benchmark results file"):
        load_bench(str(bad))


def test_bench_1_files_load_in_the_cells_words(tmp_path):
    """bench/1 named backends `source:name` (a third spelling); they load as source + backend, as cells have them."""
    old = _doc("cuda", {("grouped_mm", "uncompiled"): {1: 2.0}})
    old["schema"] = "bench/1"
    old["points"] = [{**{k: v for k, v in p.items() if k not in ("source", "backend")},
                      "backend": "transformers:grouped_mm", "source": "transformers", "name": "grouped_mm"}
                     for p in old["points"]]
    old["items"] = [{"shape": "s", "dtype": "bfloat16", "backend": "transformers:grouped_mm", "mode": "uncompiled",
                     "status": "ok", "reason": None}]
    old["config"]["backends"] = ["transformers:grouped_mm", "reference:eager"]
    path = tmp_path / "bench-cuda.json"
    path.write_text(json.dumps(old))
    doc = load_bench(str(path))
    assert doc["schema"] == SCHEMA == "bench/2"
    assert [(p["source"], p["backend"], p["median_s"]) for p in doc["points"]] == [("transformers", "grouped_mm", 2.0)]
    assert "name" not in doc["points"][0]
    assert (doc["items"][0]["source"], doc["items"][0]["backend"]) == ("transformers", "grouped_mm")
    assert doc["config"]["backends"] == ["transformers-grouped_mm", "reference-eager"]
    assert check_all({"cuda": doc})  # the claims read it


# --- the command, as users run it ------------------------------------------------------------------------------

@pytest.mark.slow
def test_bench_command_on_tiny_sizes(tmp_path):
    pytest.importorskip("transformers")
    proc = run_harness("bench", "--device", "cpu", "--out", str(tmp_path), "--shapes", TINY, "--tokens", "1,3",
                       "--dtypes", "float32", "--modes", "uncompiled", "--max-reps", "2", "--no-plots",
                       "--backends", "transformers-eager,transformers-batched_mm,transformers-grouped_mm",
                       timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = load_bench(str(tmp_path / "bench-cpu.json"))
    assert doc["complete"] and doc["config"]["threads"] == 1
    assert len(doc["loadavg_before"]) == 3 and len(doc["loadavg_after"]) == 3
    assert {(p["source"], p["backend"], p["tokens"], p["status"]) for p in doc["points"]} == {
        ("transformers", name, tokens, "ok") for name in ("eager", "batched_mm", "grouped_mm") for tokens in (1, 3)}
    assert doc["config"]["backends"] == ["transformers-eager", "transformers-batched_mm", "transformers-grouped_mm"]
    assert all(p["max_rel_error"] < 1e-4 for p in doc["points"])
    assert (tmp_path / "CLAIMS.md").exists() and "T=3" in proc.stdout


@pytest.mark.parametrize("args", [
    ["--modes", "reduce-overhead", "--device", "cpu"],
    ["--tokens", "1,x"],
    ["--report", "/nonexistent/folder"],
])
def test_bench_bad_input_exits_2(args):
    proc = run_harness("bench", *args, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error:" in proc.stderr
