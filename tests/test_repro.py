"""`repro CELL_ID`: a standalone script (torch, and transformers for its cells) that reproduces the cell."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from harness.cells import Cell, expand_cells
from harness.errors import HarnessError
from harness.matrix import load_matrix
from harness.repro import cell_spec, script
from tests.conftest import REPO_ROOT, fixture_backend, matrix_doc, run_harness, write_matrix

MATRIX = str(REPO_ROOT / "matrix.yaml")


def _standalone(path, cwd, env=None):
    """Run a script in isolated mode (-I: no PYTHONPATH, no user site, not even its own folder's neighbours)."""
    return subprocess.run([sys.executable, "-I", str(path)], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})}, check=False)


@pytest.mark.slow
def test_reference_failure_reproduces_with_only_torch(tmp_path):
    cell_id = "reference-eager-default-float32-fullgraph-cpu-decode"
    out = tmp_path / "repro.py"
    proc = run_harness("repro", cell_id, "--matrix", MATRIX, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert not re.search(r"^\s*(from|import) (harness|backends|tests)\b", text, re.M)  # inlined, not imported
    assert "def eager_experts_forward" in text and "def grouped_mm(" not in text  # only what eager needs
    run = _standalone(out, tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr[-3000:]
    assert "data-dependent" in run.stderr and "torch._dynamo.exc" in run.stderr


@pytest.mark.slow
def test_script_builds_the_harness_weights_and_inputs(tmp_path):
    """Same seed, module and inputs: the script's per-call errors are the harness's, digit for digit."""
    from harness.cell_run import run_cell

    matrix = load_matrix(MATRIX, import_backends=False)
    cell = next(c for c in expand_cells(matrix) if c.id == "reference-grouped_mm-uncompiled-bfloat16-cpu-prefill")
    harness_calls = run_cell(cell_spec(matrix, cell))["signals"]["calls"]
    out = tmp_path / "repro.py"
    out.write_text(script(matrix, cell))
    run = _standalone(out, tmp_path)
    assert run.returncode == 0 and "did not reproduce" in run.stdout, run.stderr[-3000:]
    printed = re.findall(r"max relative error (\S+) ", run.stdout)
    assert printed == [f"{call['rel_error']:.3g}" for call in harness_calls]


def test_user_backend_is_imported_and_its_mismatch_reproduces(tmp_path):
    matrix = write_matrix(tmp_path / "matrix.yaml", matrix_doc({"wrong": fixture_backend("wrong_numerics")},
                                                               axes={"mode": ["uncompiled"]}))
    out = tmp_path / "repro.py"
    assert run_harness("repro", "user-wrong-uncompiled-float32-cpu-prefill", "--matrix", str(matrix), "--out",
                       str(out)).returncode == 0
    assert "from tests.fixtures.backends import wrong_numerics" in out.read_text()
    run = subprocess.run([sys.executable, str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, check=False)
    assert run.returncode == 1 and "AssertionError" in run.stderr and "> tolerance" in run.stderr


def test_unknown_cell_and_unsupported_cells_are_bad_input(tmp_path):
    proc = run_harness("repro", "reference-nope", "--matrix", MATRIX)
    assert proc.returncode == 2 and "no cell with id 'reference-nope'" in proc.stderr
    matrix = load_matrix(MATRIX, import_backends=False)
    with pytest.raises(HarnessError, match="model-scope cells run transformers backends only"):
        script(matrix, Cell("reference", "eager", "default", "float32", True, "cpu", "decode", scope="model"))


# One cell of each kind: (cell id, what the script must contain).
KINDS = {
    "transformers-eager-default-float32-fullgraph-cpu-decode": "EXPERTS_IMPLEMENTATION = 'eager'",
    "transformers-grouped_mm-default-float32-fullgraph-cpu-decode-gpt_oss-training": "def _compare_grads",
    "transformers-batched_mm-default-bfloat16-fullgraph-cpu-decode-non_gated-model": "def check_load_forms",
    "transformers-grouped_mm-default-bfloat16-fullgraph-cpu-prefill-deepseek_v2": "def build_experts",
    "reference-grouped_mm-default-bfloat16-fullgraph-cpu-prefill": "def grouped_mm(",
}


@pytest.mark.parametrize("cell_id", sorted(KINDS))
def test_every_kind_of_script_is_standalone_python(cell_id):
    """No import of harness/backends/tests (inlined instead), every name the inlined code imported defined."""
    matrix = load_matrix(MATRIX, import_backends=False)
    cell = next(c for c in expand_cells(matrix) if c.id == cell_id)
    text = script(matrix, cell)
    assert not re.search(r"^\s*(from|import) (harness|backends|tests)\b", text, re.M)
    assert not re.search(r"^\s*from \.", text, re.M)
    compile(text, cell_id, "exec")  # one `from __future__` at the top, nothing misplaced
    assert KINDS[cell_id] in text
    if cell.source == "transformers":
        assert "import transformers" in text and "Needs only torch and transformers" in text


def _cell(matrix, cell_id):
    return next(c for c in expand_cells(matrix) if c.id == cell_id)


def _write(tmp_path, matrix, cell_id):
    out = tmp_path / "repro.py"
    out.write_text(script(matrix, _cell(matrix, cell_id)))
    return out


@pytest.mark.slow
def test_transformers_eager_fullgraph_failure_reproduces(tmp_path):
    """transformers' own eager experts (Qwen2-MoE) under fullgraph: the harness's compile_error, data-dependent."""
    cell_id = "transformers-eager-default-float32-fullgraph-cpu-decode"
    out = tmp_path / "repro.py"
    proc = run_harness("repro", cell_id, "--matrix", MATRIX, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "class Qwen2MoeExperts" not in text and '"Qwen2MoeExperts"' in text  # transformers' class, not a copy
    run = _standalone(out, tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr[-3000:]
    assert "data-dependent" in run.stderr and "torch._dynamo.exc" in run.stderr
    import transformers

    first = run.stdout.splitlines()[0]  # what a bug report needs: versions and which transformers ran
    assert f"transformers {transformers.__version__} ({os.path.dirname(transformers.__file__)})" in first


@pytest.mark.slow
def test_transformers_script_builds_the_harness_experts_and_inputs(tmp_path):
    """Same family, config, seeded weights and inputs: the script's per-call errors are the harness's."""
    from harness.cell_run import run_cell

    matrix = load_matrix(MATRIX, import_backends=False)
    cell_id = "transformers-grouped_mm-uncompiled-float32-cpu-decode"
    harness = run_cell(cell_spec(matrix, _cell(matrix, cell_id)))
    assert harness["status"] == "pass"
    run = _standalone(_write(tmp_path, matrix, cell_id), tmp_path)
    assert run.returncode == 0 and "did not reproduce" in run.stdout, run.stderr[-3000:]
    printed = re.findall(r"max relative error (\S+) ", run.stdout)
    assert printed == [f"{call['rel_error']:.3g}" for call in harness["signals"]["calls"]]


@pytest.mark.slow
def test_transformers_grouped_mm_compiled_cell_passes(tmp_path):
    matrix = load_matrix(MATRIX, import_backends=False)
    out = _write(tmp_path, matrix, "transformers-grouped_mm-default-float32-fullgraph-cpu-decode")
    assert "torch.compile(forward, mode=None, fullgraph=True)" in out.read_text()
    run = _standalone(out, tmp_path)
    assert run.returncode == 0 and "did not reproduce: every call passed" in run.stdout, run.stderr[-3000:]
    assert run.stdout.count("max relative error") == 3


# transformers' grouped_mm key running its batched_mm function: dispatch says grouped_mm, bmm runs.
_SWAP_GROUPED_FOR_BATCHED = ("from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS as F; "
                             "F._global_mapping['grouped_mm'] = F._global_mapping['batched_mm']")


@pytest.mark.slow
def test_transformers_misdispatch_is_caught_by_the_harness_and_its_script_alike(tmp_path, monkeypatch):
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    from harness.cell_run import run_cell

    matrix = load_matrix(MATRIX, import_backends=False)
    cell_id = "transformers-grouped_mm-uncompiled-float32-cpu-decode"
    path = _write(tmp_path, matrix, cell_id)
    monkeypatch.setitem(ALL_EXPERTS_FUNCTIONS._global_mapping, "grouped_mm",
                        ALL_EXPERTS_FUNCTIONS._global_mapping["batched_mm"])
    harness = run_cell(cell_spec(matrix, _cell(matrix, cell_id)))
    assert harness["status"] == "runtime_error" and harness["error"]["type"] == "MisDispatch", harness["error"]
    run = subprocess.run([sys.executable, "-I", "-c", f"{_SWAP_GROUPED_FOR_BATCHED}; import runpy; "
                          f"runpy.run_path({str(path)!r}, run_name='__main__')"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 1, run.stdout + run.stderr[-3000:]
    assert "MisDispatch: profiled call: expected ops ['grouped_mm'] not seen; ops of another backend ['bmm'] seen" \
        in run.stderr, run.stderr[-3000:]
    assert "did not reproduce" not in run.stdout


@pytest.mark.slow
def test_training_script_checks_gradients_like_the_harness(tmp_path):
    """Forward + backward, every gradient against the float64 oracle: the harness's numbers, per call."""
    from harness.cell_run import run_cell

    matrix = load_matrix(MATRIX, import_backends=False)
    cell_id = "transformers-eager-uncompiled-float32-cpu-decode-training"
    harness = run_cell(cell_spec(matrix, _cell(matrix, cell_id)))
    assert harness["status"] == "pass"
    run = _standalone(_write(tmp_path, matrix, cell_id), tmp_path)
    assert run.returncode == 0 and "did not reproduce" in run.stdout, run.stderr[-3000:]
    printed = re.findall(r"gradients max relative error (\S+) ", run.stdout)
    assert printed == [f"{call['grad_rel_error']:.3g}" for call in harness["signals"]["calls"]]
    for name in harness["signals"]["grad_errors"]:  # hidden_states, routing_weights, gate_up_proj, down_proj
        assert f"gradient of {name}: " in run.stdout


@pytest.mark.slow
def test_reference_training_failure_reproduces(tmp_path):
    """A reference training cell inlines the reference backend and fails under fullgraph as the harness does."""
    reference = {"source": "reference", "impl": "backends.reference:eager_experts_forward"}
    matrix_path = write_matrix(tmp_path / "matrix.yaml", matrix_doc(
        {"eager": reference}, axes={"mode": ["default"], "fullgraph": [True], "shape": ["decode"],
                                    "phase": ["training"]}))
    out = tmp_path / "repro.py"
    proc = run_harness("repro", "reference-eager-default-float32-fullgraph-cpu-decode-training", "--matrix",
                       str(matrix_path), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "def eager_experts_forward" in text and "def _oracle_step" in text and "enable_grad" in text
    run = _standalone(out, tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr[-3000:]
    assert "data-dependent" in run.stderr and "torch._dynamo.exc" in run.stderr


@pytest.mark.slow
def test_model_script_runs_the_model_checks_then_fails_as_observed(tmp_path):
    """GPT-OSS model, eager experts: the uncompiled checks pass, the fullgraph whole-model compile fails."""
    matrix = load_matrix(MATRIX, import_backends=False)
    run = _standalone(_write(tmp_path, matrix, "transformers-eager-default-bfloat16-fullgraph-cpu-decode"
                                               "-gpt_oss-model"), tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr[-3000:]
    assert "model GptOssForCausalLM saved and reloaded" in run.stdout
    assert "uncompiled checks passed: load_string, load_dict_global, runtime_switch" in run.stdout
    assert "data-dependent" in run.stderr and "torch._dynamo.exc" in run.stderr


@pytest.mark.slow
def test_model_script_passes_every_check_of_a_passing_cell(tmp_path):
    """Qwen2-MoE with grouped_mm: load forms, runtime switch, Qwen3-VL sub-configs, compiled forward, generate()."""
    matrix = load_matrix(MATRIX, import_backends=False)
    run = _standalone(_write(tmp_path, matrix, "transformers-grouped_mm-default-bfloat16-fullgraph-cpu"
                                               "-decode-model"), tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert "per_subconfig" in run.stdout and "aten::_grouped_mm" in run.stdout
    assert "'new_tokens': 4" in run.stdout and "did not reproduce: every check passed" in run.stdout
