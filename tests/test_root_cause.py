"""Error records name the root cause behind Dynamo's wrappers and the line of the code under test (issue 14)."""

from __future__ import annotations

import os
import sys
import tempfile

import pytest
import torch

from harness.portable import CHECKOUT, local_path, portable_json, portable_path, portable_text
from harness.measure.root_cause import describe, root_cause
from harness.measure.signals import error_record
from tests.fixtures import compile_failures as cf

HELPER = "tests/fixtures/compile_failures.py"


def _record(run) -> dict:
    torch._dynamo.reset()
    with pytest.raises(Exception) as info:
        run()
    return error_record(info.value, "compile")


def _at(tag: str, function: str) -> str:
    return f"{HELPER}:{cf.line_of(tag)} in {function}"


def test_fake_tensor_failure_names_the_meta_error_and_the_user_line():
    record = _record(cf.run_grouped_mm_mixed_dtypes)
    assert record["type"] == "torch._dynamo.exc.TorchRuntimeError"
    assert record["message"].startswith("RuntimeError: Expected inputs of BF16 type but got mat_a.dtype=torch.float32")
    assert record["where"] == _at("grouped_mm", "grouped_mm_mixed_dtypes")
    assert record["wrapper"] == "RuntimeError when making fake tensor call"
    detail = record["detail"]
    assert detail.startswith(record["message"])
    assert detail.index(record["where"]) < detail.index("wrapped by torch._dynamo.exc.TorchRuntimeError")
    assert "TorchRuntimeError <- Unsupported <- RuntimeError" in detail
    assert "Set TORCHDYNAMO_VERBOSE" not in detail
    assert describe(record) == f"{record['message']} ({record['where']})"


def test_where_is_the_innermost_user_frame_of_a_nested_call():
    record = _record(cf.run_mm_shape_mismatch_nested)
    assert record["message"] == "RuntimeError: a and b must have same reduction dim, but got [3, 4] X [5, 6]."
    assert record["where"] == _at("mm", "_project")
    stack = record["detail"].split("user code (most recent call last):\n", 1)[1]
    assert stack.index("in mm_shape_mismatch_nested") < stack.index("in _project")


def test_data_dependent_int_under_fullgraph_is_the_guard_error_at_the_loop():
    record = _record(cf.run_data_dependent_loop)
    assert record["type"] == "torch._dynamo.exc.UserError"
    assert record["message"].startswith("GuardOnDataDependentSymNode: Could not extract specialized integer")
    assert record["where"] == _at("data-dependent", "data_dependent_loop")
    assert record["wrapper"].startswith("Consider annotating your code")


def test_backend_compiler_failure_names_the_backends_error_and_line():
    record = _record(cf.run_refusing_backend)
    assert record["type"] == "torch._dynamo.exc.BackendCompilerFailed"
    assert record["message"] == "ValueError: fixture backend refuses this graph"
    assert record["where"] == _at("backend", "refusing_backend")
    assert record["wrapper"] == "backend='refusing_backend' raised:"


def test_observed_exception_is_unwrapped_through_context():
    record = _record(cf.run_missing_attribute)
    assert record["message"] == "AttributeError: 'Tensor' object has no attribute 'no_such_attribute'"
    assert record["where"] == _at("attribute", "missing_attribute")
    assert record["wrapper"] == "Observed exception"


def test_a_graph_break_wraps_nothing_and_keeps_its_own_message():
    record = _record(cf.run_explicit_graph_break)
    assert record["type"] == "torch._dynamo.exc.Unsupported" and "wrapper" not in record
    assert record["message"] == "Call to `torch._dynamo.graph_break()`"
    assert record["where"] == _at("graph_break", "explicit_graph_break")
    assert describe(record) == f"torch._dynamo.exc.Unsupported: {record['message']} ({record['where']})"


def test_a_failure_of_the_compiled_graph_at_run_time_points_at_the_compiled_function():
    record = _record(cf.run_mm_mixed_dtypes_at_run_time)
    assert record["type"] == "RuntimeError" and "wrapper" not in record
    assert "same dtype" in record["message"]
    assert record["where"].startswith(f"{HELPER}:") and record["where"].endswith(" in mm_mixed_dtypes")


def test_plain_errors_are_their_own_root_cause():
    record = _record(cf.plain_error)
    assert record == {"type": "KeyError", "message": "'expert 7'", "where": _at("plain", "plain_error"),
                      "phase": "compile", "detail": f"KeyError: 'expert 7'\n  at {_at('plain', 'plain_error')}"}


def test_user_code_section_of_the_message_is_used_without_dynamos_attributes():
    """A wrapper known only by its text (no real_stack): the "from user code:" section gives `where`."""
    text = ("RuntimeError when making fake tensor call\nfrom user code:\n"
            f'   File "{os.path.join(CHECKOUT, "backends", "reference.py")}", line 12, in experts\n'
            "    return x @ w\n")
    try:
        raise torch._dynamo.exc.TorchRuntimeError(text)
    except torch._dynamo.exc.TorchRuntimeError as exc:
        record = error_record(exc, "compile")
    assert record["where"] == "backends/reference.py:12 in experts"
    assert CHECKOUT not in record["detail"]


def test_an_unrelated_exception_being_handled_is_not_the_root_cause():
    try:
        try:
            {}["missing"]
        except KeyError:
            raise torch._dynamo.exc.TorchRuntimeError("RuntimeError when making fake tensor call") from None
    except torch._dynamo.exc.TorchRuntimeError as exc:
        assert root_cause(exc) is exc
        assert "wrapper" not in error_record(exc, "compile")


def test_the_harness_is_never_where():
    from harness.results.results_json import read_json

    with pytest.raises(Exception) as info:
        read_json(os.path.join(tempfile.gettempdir(), "no-such-dir-for-root-cause", "results.json"))
    where = error_record(info.value, "setup")["where"]
    assert not where.startswith("harness/") and where.startswith("tests/test_root_cause.py:")


def test_portable_paths():
    assert portable_path(torch._dynamo.utils.__file__) == "torch/_dynamo/utils.py"
    assert portable_path(os.path.join(CHECKOUT, "backends", "reference.py")) == "backends/reference.py"
    assert portable_path(CHECKOUT) == "<checkout>"
    inside_tmp = os.path.join(tempfile.gettempdir(), "a dir", "matrix.yaml")
    assert portable_path(inside_tmp) == "<tmp>/a dir/matrix.yaml"
    assert local_path("<tmp>/a dir/matrix.yaml") == inside_tmp
    assert portable_path("relative/matrix.yaml") == "relative/matrix.yaml"
    assert portable_path(os.path.join(sys.prefix, "bin", "python")).startswith(("<python>/", "bin/"))
    assert not portable_path("/nonexistent-root-xyz/a/b/c/d.py").startswith("/")


def test_portable_text_rewrites_paths_only():
    site = os.path.dirname(os.path.dirname(torch.__file__))
    text = (f'File "{site}/torch/_ops.py", line 3; cwd {CHECKOUT}; see https://example.org{CHECKOUT}/x; '
            f"/no-such-root{CHECKOUT}/y stays; --out={tempfile.gettempdir()}/out")
    assert portable_text(text) == ('File "torch/_ops.py", line 3; cwd <checkout>; see https://example.org'
                                   f'{CHECKOUT}/x; /no-such-root{CHECKOUT}/y stays; --out=<tmp>/out')
    assert portable_json({"a": [f"{CHECKOUT}/matrix.yaml", 1, None]}) == {"a": ["matrix.yaml", 1, None]}


def test_packages_on_pythonpath_are_written_as_importable_paths(tmp_path):
    """A GPU image's transformers replaced with `pip install --target DIR` + PYTHONPATH=DIR."""
    import subprocess

    target = tmp_path / "site"
    code = ("from harness.portable import portable_path; "
            f"print(portable_path({str(target / 'transformers' / 'integrations' / 'moe.py')!r}))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), CHECKOUT])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "transformers/integrations/moe.py"


def test_a_path_cut_short_by_a_length_limit_is_not_left_behind():
    # "/tm" of "/tmp" (always a known folder): a strict prefix of a known folder and inside none, so there is no
    # folder to rewrite it against (a cut inside a known folder, e.g. "/tmp/ci/fr", becomes "<tmp>/ci/fr").
    cut = "/tm"
    text = portable_text(f'  File "{cut}\nchain: UserError <- GuardOnDataDependentSymNode')
    assert cut not in text and '"<path cut>' in text and "chain: UserError" in text
    assert portable_text("https://example.org/work/x and / alone") == "https://example.org/work/x and / alone"
