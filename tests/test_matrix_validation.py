"""matrix.yaml validation: every mistake is one HarnessError naming file, line and key (CLI: exit 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.errors import HarnessError
from harness.config.load import load_matrix
from tests.conftest import REPO_ROOT, fixture_backend, matrix_doc, run_harness

GOOD_BACKENDS = {"healthy": fixture_backend("healthy")}


def _error(tmp_matrix, doc) -> HarnessError:
    path = tmp_matrix(doc)
    with pytest.raises(HarnessError) as info:
        load_matrix(str(path))
    return info.value


def test_the_shipped_matrix_is_valid():
    matrix = load_matrix("matrix.yaml")
    documented = {("reference", name) for name in ("eager", "batched_mm", "grouped_mm")}
    assert documented <= set(matrix.backends)
    # One entry per implementation: transformers' are the keys its ExpertsInterface registers, plus eager.
    from harness.environment.registered import registered_keys

    assert [name for source, name in matrix.backends if source == "transformers"] == list(registered_keys())
    assert matrix.axes["mode"] == ("uncompiled", "default", "reduce-overhead", "max-autotune",
                                   "max-autotune-no-cudagraphs")


def test_yaml_syntax_error_names_file_and_line(tmp_matrix):
    err = _error(tmp_matrix, "schema: 2\nbackends: {a: [\n")
    assert err.file.endswith("matrix.yaml") and err.line is not None
    assert "YAML syntax error" in err.message


def test_duplicate_key_is_rejected_with_both_lines(tmp_matrix):
    text = "schema: 2\nbackends: {}\nbackends: {}\n"
    err = _error(tmp_matrix, text)
    assert (err.key, err.line) == ("backends", 3)
    assert "first at line 2" in err.message


@pytest.mark.parametrize("axis, value", [("mode", "turbo"), ("dtype", "float8"), ("device", "tpu"),
                                         ("fullgraph", "yes"), ("shape", "huge"), ("layout", "diagonal")])
def test_unknown_axis_value_lists_what_is_allowed(tmp_matrix, axis, value):
    doc = matrix_doc(GOOD_BACKENDS, axes={axis: [value]})
    err = _error(tmp_matrix, doc)
    assert err.key == f"axes.{axis}" and repr(value) in err.message and err.allowed and err.line


def test_empty_axis_is_rejected(tmp_matrix):
    err = _error(tmp_matrix, matrix_doc(GOOD_BACKENDS, axes={"dtype": []}))
    assert err.key == "axes.dtype" and "non-empty" in err.message


def test_unknown_top_level_key(tmp_matrix):
    err = _error(tmp_matrix, matrix_doc(GOOD_BACKENDS, tolerence={"float32": 1}))
    assert err.key == "tolerence" and "tolerances" in err.allowed


def test_tolerance_must_be_a_number(tmp_matrix):
    err = _error(tmp_matrix, matrix_doc(GOOD_BACKENDS, tolerances={"float32": "tight"}))
    assert err.key == "tolerances.float32" and "number" in err.message


@pytest.mark.parametrize("impl, expected", [
    ("no_such_package.mod:fn", "no module named 'no_such_package'"),
    ("tests.fixtures.backends:missing", "has no attribute 'missing'"),
    ("tests.fixtures.backends:NOT_A_FUNCTION", "not a callable"),
    ("tests.fixtures.broken_import:fn", "raised RuntimeError: broken on purpose"),
    ("not a path", "dotted path"),
    # The harness's own modules are read, not imported, when the function is there; a mistake is still caught.
    ("backends.reference:no_such_forward", "has no attribute 'no_such_forward'"),
    ("backends.layouts:LAYOUTS", "not a callable"),
])
def test_bad_backend_path(tmp_matrix, impl, expected):
    err = _error(tmp_matrix, matrix_doc({"bad": {"source": "user", "impl": impl}}))
    assert err.key == "backends.user.bad" and expected in err.message


def test_loading_the_shipped_matrix_does_not_import_torch():
    # The controller validates matrix.yaml on every run; importing torch there costs a core ~2.5 s.
    code = "import sys; from harness.config.load import load_matrix; load_matrix('matrix.yaml'); print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


def test_rule_that_matches_no_cell(tmp_matrix):
    # Each value exists on its axis, but uncompiled cells have no fullgraph value: no cell matches.
    rule = {"match": {"mode": "uncompiled", "fullgraph": True}, "expect": "fail", "reason": "x"}
    err = _error(tmp_matrix, matrix_doc(GOOD_BACKENDS, expectations=[rule]))
    assert err.key == "expectations" and "matches no cell" in err.message and err.line


def test_schema_1_matrices_get_a_migration_hint(tmp_matrix):
    doc = matrix_doc(GOOD_BACKENDS)
    doc["schema"] = 1
    err = _error(tmp_matrix, doc)
    assert err.key == "schema" and "slices" in err.message and err.line == 1


@pytest.mark.parametrize("slices, key, needle", [
    ({"s": {"colour": "red"}}, "slices.s.colour", "unknown axis"),
    ({"s": {"backend": "nope"}}, "slices.s.backend", "unknown value"),
    ({"s": {"mode": []}}, "slices.s.mode", "at least one value"),
    ({"s": "everything"}, "slices.s", "must be a mapping"),
    ({}, "slices", "at least one slice"),
])
def test_malformed_slice(tmp_matrix, slices, key, needle):
    err = _error(tmp_matrix, matrix_doc(GOOD_BACKENDS, slices=slices))
    assert err.key == key and needle in err.message and err.line


@pytest.mark.parametrize("backends, key, needle", [
    ({"vendor": {"x": "a.b:c"}}, "backends.vendor", "unknown key"),
    ({"transformers": "all"}, "backends.transformers", "registered"),
    ({"user": {"bad name": "a.b:c"}}, "backends.user.bad name", "letters, digits"),
    ({"user": {"x": "no_colon"}}, "backends.user.x", "dotted path"),
])
def test_malformed_backends(tmp_matrix, backends, key, needle):
    err = _error(tmp_matrix, matrix_doc(backends))
    assert err.key == key and needle in err.message


def test_rule_needs_a_reason_and_a_known_status(tmp_matrix):
    err = _error(tmp_matrix, matrix_doc(GOOD_BACKENDS, expectations=[{"match": {"mode": "default"},
                                                                       "expect": "fail"}]))
    assert "reason" in err.message
    err = _error(tmp_matrix, matrix_doc(GOOD_BACKENDS, expectations=[
        {"match": {"mode": "default"}, "expect": "fail", "status": "oops", "reason": "r"}]))
    assert err.key.endswith(".status") and "compile_error" in err.allowed


def test_shape_needs_two_token_counts(tmp_matrix):
    doc = matrix_doc(GOOD_BACKENDS)
    doc["shapes"]["prefill"]["tokens"] = [8, 8]
    err = _error(tmp_matrix, doc)
    assert err.key == "shapes.prefill.tokens"


def test_cli_prints_one_line_and_exits_2(tmp_matrix):
    path = tmp_matrix(matrix_doc(GOOD_BACKENDS, axes={"mode": ["turbo"]}))
    proc = run_harness("run", "--matrix", str(path), "--out", str(path.parent / "out"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "axes.mode" in lines[0]
    assert not (path.parent / "out" / "results.json").exists()


@pytest.mark.parametrize("args, needle", [
    (["--source", "nope"], "--source"),
    (["--cell", "reference-nope"], "--cell"),
    (["--device", "cuda"], "no CUDA device"),
    (["-n", "many"], "-n"),
    (["--no-such-option"], "unrecognized arguments"),
])
def test_cli_usage_errors_exit_2(args, needle):
    proc = run_harness("run", *args)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_rule_value_not_on_the_axis(tmp_matrix):
    rule = {"match": {"device": "cuda"}, "expect": "fail", "reason": "x"}
    err = _error(tmp_matrix, matrix_doc(GOOD_BACKENDS, expectations=[rule]))
    assert err.key == "expectations[0].match.device" and err.allowed == "cpu"
