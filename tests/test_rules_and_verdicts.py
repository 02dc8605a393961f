"""Cell expansion, slices, rule combination (the last matching rule wins) and the verdict table."""

from __future__ import annotations

import itertools

import pytest

from harness.cells.cell import Cell, Expectation, expand_cells, expectation_for, run_order
from harness.config.load import load_matrix
from harness.results.verdict import Status, Verdict, judge
from tests.conftest import fixture_backend, matrix_doc

BACKENDS = {"healthy": fixture_backend("healthy"), "other": fixture_backend("graph_break")}


def _matrix(tmp_matrix, rules, **axes):
    return load_matrix(str(tmp_matrix(matrix_doc(BACKENDS, axes=axes, expectations=rules))))


def test_ids_are_readable_and_uncompiled_is_one_cell(tmp_matrix):
    matrix = _matrix(tmp_matrix, [], mode=["uncompiled", "max-autotune-no-cudagraphs"])
    ids = [cell.id for cell in expand_cells(matrix)]
    assert ids == [
        "user-healthy-uncompiled-float32-cpu-prefill",
        "user-healthy-max-autotune-no-cudagraphs-float32-fullgraph-cpu-prefill",
        "user-healthy-max-autotune-no-cudagraphs-float32-breaks-allowed-cpu-prefill",
        "user-other-uncompiled-float32-cpu-prefill",
        "user-other-max-autotune-no-cudagraphs-float32-fullgraph-cpu-prefill",
        "user-other-max-autotune-no-cudagraphs-float32-breaks-allowed-cpu-prefill",
    ]
    assert len(set(ids)) == len(ids)


def test_layout_appears_in_the_id_only_when_not_default():
    cell = Cell("reference", "grouped_mm", "default", "bfloat16", True, "cpu", "prefill", "gpt_oss")
    assert cell.id == "reference-grouped_mm-default-bfloat16-fullgraph-cpu-prefill-gpt_oss"


def test_default_expectation_is_pass(tmp_matrix):
    matrix = _matrix(tmp_matrix, [])
    assert {expectation_for(c, matrix.rules).expect for c in expand_cells(matrix)} == {"pass"}


def test_the_last_matching_rule_wins(tmp_matrix):
    rules = [{"match": {"backend": "other"}, "expect": "fail", "reason": "broad"},
             {"match": {"backend": "other", "fullgraph": True}, "expect": "pass", "reason": "exception"}]
    matrix = _matrix(tmp_matrix, rules)
    by_id = {c.id: expectation_for(c, matrix.rules) for c in expand_cells(matrix)}
    assert by_id["user-other-default-float32-fullgraph-cpu-prefill"].reason == "exception"
    assert by_id["user-other-default-float32-breaks-allowed-cpu-prefill"].reason == "broad"
    assert by_id["user-healthy-default-float32-fullgraph-cpu-prefill"].expect == "pass"


def test_a_rule_overridden_on_every_cell_it_matches_is_an_error(tmp_matrix):
    from harness.errors import HarnessError

    rules = [{"match": {"backend": "other", "fullgraph": True}, "expect": "pass", "reason": "narrow"},
             {"match": {"backend": "other"}, "expect": "fail", "reason": "broad"}]
    with pytest.raises(HarnessError) as info:
        _matrix(tmp_matrix, rules)
    text = str(info.value)
    assert "decided by a later rule" in text and "last matching rule wins" in text
    assert "matrix.yaml:" in text and "expectations" in text


def test_a_capability_rule_does_not_shadow_the_rule_before_it(tmp_matrix):
    rules = [{"match": {"backend": "healthy", "device": "cuda"}, "expect": "fail", "reason": "docs"},
             {"match": {"backend": "healthy", "device": "cuda"}, "compute_capability": ">=9.0", "expect": "pass",
              "reason": "measured"}]
    _matrix(tmp_matrix, rules, device=["cpu", "cuda"])  # loads: the docs' rule still decides below sm 9.0


PASS, FAIL = Expectation("pass"), Expectation("fail", reason="docs say so")


@pytest.mark.parametrize("expected, status, text, verdict", [
    (PASS, Status.PASS, "", Verdict.OK),
    (PASS, Status.COMPILE_ERROR, "", Verdict.REGRESSION),
    (PASS, Status.RUNTIME_ERROR, "", Verdict.REGRESSION),
    (PASS, Status.MISMATCH, "", Verdict.REGRESSION),
    (PASS, Status.CRASH, "", Verdict.REGRESSION),
    (PASS, Status.TIMEOUT, "", Verdict.REGRESSION),
    (PASS, Status.SKIPPED, "", Verdict.NOT_APPLICABLE),
    (FAIL, Status.PASS, "", Verdict.UNEXPECTED_PASS),
    (FAIL, Status.COMPILE_ERROR, "", Verdict.OK),
    (FAIL, Status.CRASH, "", Verdict.OK),
    (FAIL, Status.SKIPPED, "", Verdict.NOT_APPLICABLE),
    (Expectation("fail", ("compile_error",)), Status.MISMATCH, "", Verdict.REGRESSION),
    (Expectation("fail", ("compile_error",), "data-dependent"), Status.COMPILE_ERROR, "x: data-dependent op",
     Verdict.OK),
    (Expectation("fail", ("compile_error",), "data-dependent"), Status.COMPILE_ERROR, "x: out of memory",
     Verdict.REGRESSION),
], ids=lambda v: getattr(v, "value", None) or getattr(v, "expect", None) or None)
def test_verdict_table(expected, status, text, verdict):
    judgement = judge(expected, status, text)
    assert judgement.verdict is verdict
    assert judgement.reason


def test_observe_only_is_ok_whatever_happens():
    observe = Expectation("observe", reason="training is undocumented")
    for status in (Status.PASS, Status.MISMATCH, Status.CRASH):
        judgement = judge(observe, status)
        assert judgement.verdict is Verdict.OK and status.value in judgement.reason


def test_slices_choose_which_cells_exist(tmp_matrix):
    slices = {"everything_compiled": {"backend": "healthy"},
              "control_only": {"backend": "other", "mode": "uncompiled"}}
    matrix = load_matrix(str(tmp_matrix(matrix_doc(BACKENDS, slices=slices))))
    ids = [c.id for c in expand_cells(matrix)]
    assert [i for i in ids if "-other-" in i] == ["user-other-uncompiled-float32-cpu-prefill"]
    assert len([i for i in ids if "-healthy-" in i]) == 3


def test_overlapping_slices_give_each_cell_once(tmp_matrix):
    slices = {"a": {"mode": "default"}, "b": {"fullgraph": True}}
    matrix = load_matrix(str(tmp_matrix(matrix_doc(BACKENDS, slices=slices))))
    ids = [c.id for c in expand_cells(matrix)]
    assert len(ids) == len(set(ids)) == 2 * 3  # per backend: uncompiled, default x {fullgraph, breaks}


def test_a_backend_transformers_registers_without_a_rule_is_observed():
    from harness.config.matrix import Rule

    cell = Cell("transformers", "sonicmoe", "default", "bfloat16", True, "cuda", "decode")
    assert expectation_for(cell, ()).expect == "observe"
    assert "no rule" in expectation_for(cell, ()).reason
    documented = Cell("transformers", "grouped_mm", "default", "bfloat16", True, "cuda", "decode")
    assert expectation_for(documented, ()).expect == "pass"
    named = Rule((("backend", ("sonicmoe",)), ("mode", ("uncompiled",))), "fail", None, None, "r", 1)
    assert expectation_for(cell, (named,)).expect == "pass"  # a rule speaks for it: default pass elsewhere


def test_compute_capability_rules_apply_only_on_matching_gpus(tmp_matrix):
    rules = [{"match": {"backend": "healthy", "device": "cuda"}, "expect": "fail", "reason": "docs"},
             {"match": {"backend": "healthy", "device": "cuda"}, "compute_capability": ">=9.0", "expect": "pass",
              "reason": "measured on sm90"}]
    matrix = _matrix(tmp_matrix, rules, device=["cpu", "cuda"])
    cell = next(c for c in expand_cells(matrix) if c.backend == "healthy" and c.device == "cuda")
    assert expectation_for(cell, matrix.rules, (9, 0)).reason == "measured on sm90"
    assert expectation_for(cell, matrix.rules, (8, 0)).reason == "docs"
    assert expectation_for(cell, matrix.rules, None).reason == "docs"  # no GPU: no evidence, docs claim stands
    cpu = next(c for c in expand_cells(matrix) if c.backend == "healthy" and c.device == "cpu")
    assert expectation_for(cpu, matrix.rules, (9, 0)).expect == "pass"


@pytest.mark.parametrize("rule, needle", [
    ({"match": {"device": "cuda"}, "compute_capability": "9.0", "expect": "pass", "reason": "r"}, "must look like"),
    ({"match": {"mode": "default"}, "compute_capability": ">=9.0", "expect": "pass", "reason": "r"}, "device: cuda"),
])
def test_bad_compute_capability_condition(tmp_matrix, rule, needle):
    from harness.errors import HarnessError

    with pytest.raises(HarnessError) as info:
        _matrix(tmp_matrix, [rule], device=["cpu", "cuda"])
    assert needle in str(info.value) and "compute_capability" in str(info.value)


def test_run_order_puts_cells_of_the_same_graphs_together_and_keeps_every_cell(tmp_matrix):
    matrix = _matrix(tmp_matrix, [], mode=["uncompiled", "default", "max-autotune"], dtype=["float32", "bfloat16"],
                     shape=["decode", "prefill"])
    cells = expand_cells(matrix)
    ordered = run_order(matrix, cells)
    assert sorted(c.id for c in ordered) == sorted(c.id for c in cells)  # a permutation, nothing lost
    groups = [(c.backend, c.dtype, c.shape) for c in ordered]
    runs = [group for group, _ in itertools.groupby(groups)]
    assert len(runs) == len(set(runs)) == 8  # each (backend, dtype, shape) group is one contiguous run
    first = [c.id for c in ordered[:5]]
    assert first == ["user-healthy-uncompiled-float32-cpu-decode",
                     "user-healthy-default-float32-fullgraph-cpu-decode",
                     "user-healthy-default-float32-breaks-allowed-cpu-decode",
                     "user-healthy-max-autotune-float32-fullgraph-cpu-decode",
                     "user-healthy-max-autotune-float32-breaks-allowed-cpu-decode"]
    assert [c.backend for c in ordered] == sorted((c.backend for c in ordered), key=["healthy", "other"].index)


@pytest.mark.parametrize("text, capability", [("none", None), ("9.0", (9, 0)), ("12.1", (12, 1))])
def test_capability_handed_to_workers_round_trips(text, capability):
    from harness.environment.machine import format_capability, parse_capability

    assert parse_capability(text) == capability and format_capability(capability) == text


def test_bad_capability_option_is_a_usage_error():
    from harness.environment.machine import parse_capability

    with pytest.raises(ValueError, match="MAJOR.MINOR"):
        parse_capability("sm90")


def test_collection_side_imports_no_torch():
    """xdist workers load the plugin and the matrix and judge expectations; torch is the executor's job."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    code = ("import sys, harness.running.plugin; from harness.config.load import load_matrix; "
            "from harness.cells.cell import expand_cells, expectation_for, run_order; "
            "m = load_matrix('matrix.yaml', import_backends=False); "
            "[expectation_for(c, m.rules, (9, 0)) for c in run_order(m, expand_cells(m))]; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
