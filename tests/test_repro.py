"""`repro CELL_ID`: a standalone script (torch, and transformers for its cells) that reproduces the cell."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

import pytest

from harness.cells.cell import Cell, expand_cells
from harness.errors import HarnessError
from harness.config.load import load_matrix
from harness.cells.spec import cell_spec
from harness.repro.script import script
from harness.repro.facts import Facts
from harness.repro.specialise import Specialiser
from tests.conftest import REPO_ROOT, fixture_backend, matrix_doc, run_harness, write_matrix

MATRIX = str(REPO_ROOT / "matrix.yaml")
FAILING_REFERENCE = "reference-eager-default-bfloat16-fullgraph-cpu-decode"
# Issue 17 aimed under 150 lines; running the harness's own call loop (issue 16) instead of a template of it
# costs about 12 (the loop, Mismatch, the record printing), and torch's recompile logs one: 165 with the
# observed line.
MAX_REFERENCE_LINES = 170


def _standalone(path, cwd, env=None):
    """Run a script in isolated mode (-I: no PYTHONPATH, no user site, not even its own folder's neighbours)."""
    return subprocess.run([sys.executable, "-I", str(path)], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})}, check=False)


def _matrix():
    return load_matrix(MATRIX, import_backends=False)


def _cell(matrix, cell_id):
    return next(c for c in expand_cells(matrix) if c.id == cell_id)


def _write(tmp_path, matrix, cell_id):
    out = tmp_path / "repro.py"
    out.write_text(script(matrix, _cell(matrix, cell_id)))
    return out


def _standalone_text(text: str) -> None:
    """No import of harness/backends/tests (inlined instead), one import block, valid Python."""
    assert not re.search(r"^\s*(from|import) (harness|backends|tests)\b", text, re.M)
    assert not re.search(r"^\s*from \.", text, re.M)
    tree = ast.parse(text)
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert all(node in tree.body for node in imports), "an import inside a function"
    assert len(re.findall(r"^import torch$", text, re.M)) == 1


def _undefined_globals(text: str) -> set[str]:
    """Names some scope of the script reads as globals that the script neither defines nor imports."""
    import builtins
    import symtable

    table = symtable.symtable(text, "repro", "exec")
    defined = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()} | set(dir(builtins))
    missing: set[str] = set()

    def walk(scope):
        missing.update(s.get_name() for s in scope.get_symbols()
                       if s.is_referenced() and (s.is_global() or scope is table) and s.get_name() not in defined)
        for child in scope.get_children():
            walk(child)

    walk(table)
    return missing


def test_failing_reference_script_is_short_and_says_versions_and_observed_vs_expected():
    """Issue 17: a bug report's script: short, one layout, the oracle branch it needs, versions printed; issue 16:
    its call loop is the harness's own `_call_all`."""
    text = script(_matrix(), _cell(_matrix(), FAILING_REFERENCE))
    assert len(text.splitlines()) < MAX_REFERENCE_LINES, len(text.splitlines())
    assert "def _call_all(" in text and "class Mismatch(AssertionError)" in text
    _standalone_text(text)
    assert not _undefined_globals(text)
    assert "def eager_experts_forward" in text and "def grouped_mm(" not in text  # only what eager needs
    for other_layout in ("LAYOUT_FLAGS", "is_transposed", "has_bias", "interleaved", "_gate_split", "def _float64"):
        assert other_layout not in text  # only the default layout, only the oracle branch it needs
    assert "platform.python_version()" in text and "platform.platform()" in text and "torch.__version__" in text
    assert "get_device_name" in text  # the GPU
    assert "expected: pass (" in text
    assert len(re.findall(r"print\(f?[\"']observed: ", text)) == 2  # a pass, or the exception raised
    assert "spec[" not in text and "SPEC" not in text  # the cell's values, folded in


@pytest.mark.slow
def test_reference_failure_reproduces_with_only_torch(tmp_path):
    out = tmp_path / "repro.py"
    proc = run_harness("repro", FAILING_REFERENCE, "--matrix", MATRIX, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    run = _standalone(out, tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr[-3000:]
    assert "data-dependent" in run.stderr and "torch._dynamo.exc" in run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"Python {sys.version.split()[0]}, ") and ", torch " in lines[0] and "GPU: " in lines[0]
    assert lines[1].startswith("expected: pass (each call's output within 0.03")
    assert lines[2] == "call 0 (1 tokens): failed"  # the first call raised: compiling it failed
    assert lines[3].startswith("observed: torch._dynamo.exc.UserError: ")


def test_default_out_is_beside_the_results(tmp_path, monkeypatch, capsys):
    """--results DIR/results.json writes DIR/repro/repro_<id>.py; neither --out nor --results: ./, said where."""
    from harness.cli.main import main

    results = tmp_path / "run" / "results.json"
    results.parent.mkdir()
    results.write_text((REPO_ROOT / "reports" / "repro" / "results-cpu-torch2.13.0-tf5.24.0.json").read_text())
    assert main(["repro", FAILING_REFERENCE, "--matrix", MATRIX, "--results", str(results)]) == 0
    path = tmp_path / "run" / "repro" / f"repro_{FAILING_REFERENCE}.py"
    assert str(path) in capsys.readouterr().out
    text = path.read_text()
    assert "Observed by the harness (torch 2.13.0" in text and "compile_error" in text
    assert len(text.splitlines()) < MAX_REFERENCE_LINES
    monkeypatch.chdir(tmp_path)
    assert main(["repro", FAILING_REFERENCE, "--matrix", MATRIX]) == 0
    here = tmp_path / f"repro_{FAILING_REFERENCE}.py"
    assert here.exists() and str(here) in capsys.readouterr().out


@pytest.mark.slow
def test_script_builds_the_harness_weights_and_inputs(tmp_path):
    """Same seed, module and inputs: the script's per-call errors are the harness's, digit for digit."""
    from harness.measure.cell_run import run_cell

    matrix = _matrix()
    cell = _cell(matrix, "reference-grouped_mm-uncompiled-bfloat16-cpu-prefill")
    harness_calls = run_cell(cell_spec(matrix, cell))["signals"]["calls"]
    out = tmp_path / "repro.py"
    out.write_text(script(matrix, cell))
    run = _standalone(out, tmp_path)
    assert run.returncode == 0 and "did not reproduce" in run.stdout, run.stderr[-3000:]
    printed = re.findall(r"max relative error (\S+)$", run.stdout, re.M)
    assert printed == [f"{call['rel_error']:.3g}" for call in harness_calls]


@pytest.mark.slow
def test_reference_grouped_mm_fallback_custom_op_comes_along(tmp_path):
    """float32 under compile runs grouped_mm's fallback custom op: registered by decorators nothing names."""
    matrix = _matrix()
    out = _write(tmp_path, matrix, "reference-grouped_mm-default-float32-fullgraph-cpu-decode")
    text = out.read_text()
    assert "@torch.library.custom_op(FALLBACK_OP" in text and ".register_autograd(" in text
    run = _standalone(out, tmp_path)
    assert run.returncode == 0 and "did not reproduce: every call passed" in run.stdout, run.stderr[-3000:]


def test_user_backend_is_imported_and_its_mismatch_reproduces(tmp_path):
    matrix = write_matrix(tmp_path / "matrix.yaml", matrix_doc({"wrong": fixture_backend("wrong_numerics")},
                                                               axes={"mode": ["uncompiled"]}))
    out = tmp_path / "repro.py"
    assert run_harness("repro", "user-wrong-uncompiled-float32-cpu-prefill", "--matrix", str(matrix), "--out",
                       str(out)).returncode == 0
    assert "from tests.fixtures.backends import wrong_numerics" in out.read_text()
    run = subprocess.run([sys.executable, str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, check=False)
    assert run.returncode == 1 and "Mismatch: call 0 (12 tokens)" in run.stderr and "> tolerance" in run.stderr
    assert "call 0 (12 tokens): max relative error " in run.stdout  # the record _call_all kept
    assert "observed: Mismatch: call 0 (12 tokens): max relative error" in run.stdout  # the harness's error type


def test_unknown_cell_and_unsupported_cells_are_bad_input(tmp_path):
    proc = run_harness("repro", "reference-nope", "--matrix", MATRIX)
    assert proc.returncode == 2 and "no cell with id 'reference-nope'" in proc.stderr
    with pytest.raises(HarnessError, match="model-scope cells run transformers backends only"):
        script(_matrix(), Cell("reference", "eager", "default", "float32", True, "cpu", "decode", scope="model"))


# One cell of each kind: (cell id, what the script must contain: the harness's own functions).
KINDS = {
    "transformers-eager-default-float32-fullgraph-cpu-decode": ("def _run_kernel_cell", "def _call_all",
                                                               "build_experts('eager'", "def probe_dispatch"),
    "transformers-grouped_mm-default-float32-fullgraph-cpu-decode-gpt_oss-training": (
        "def run_training_cell", "def _train_all", "def _compare_grads", '"gpt_oss": Family('),
    "transformers-batched_mm-default-bfloat16-fullgraph-cpu-decode-non_gated-model": (
        "def run_model_cell", "def check_load_forms", "def run_generate"),
    "transformers-grouped_mm-default-bfloat16-fullgraph-cpu-prefill-deepseek_v2": ("def build_experts",
                                                                                  "dense_routing=True"),
    "reference-grouped_mm-default-bfloat16-fullgraph-cpu-prefill": ("def grouped_mm(", "register_fake"),
}


@pytest.mark.parametrize("cell_id", sorted(KINDS))
def test_every_kind_of_script_is_standalone_python(cell_id):
    """No import of harness/backends/tests (inlined instead), every name defined, the cell's values folded in."""
    matrix = _matrix()
    cells = {c.id: c for c in expand_cells(matrix)}
    text = script(matrix, cells[cell_id])
    _standalone_text(text)
    for marker in KINDS[cell_id]:
        assert marker in text, marker
    assert "spec[" not in text
    assert not _undefined_globals(text)
    if cells[cell_id].source == "transformers":
        assert "import transformers" in text and "torch and transformers" in text


def test_specialiser_folds_what_the_cell_fixes():
    """Branches, parameters and constants the facts decide go; calls drop the arguments their callee lost."""
    source = '''
def helper(spec, x, *, flag=False):
    """Docstring."""
    import torch
    mode = spec["mode"]
    if mode == "uncompiled":
        return x
    scale = 2 if flag else 3
    gen = torch.Generator().manual_seed(spec["seed"])
    unused = torch.randn(2, generator=gen)
    return torch.compile(x, mode=None if mode == "default" else mode) * scale


def caller(spec, y):
    return helper(spec, y, flag=True)
'''
    tree = ast.parse(source)
    facts = Facts(params={"spec": {"mode": "default", "seed": 7}}, func_params={"helper": {"flag": True}})
    specialiser = Specialiser(facts)
    specialiser.callees = {"helper": tree.body[0]}
    helper = ast.unparse(specialiser.function(tree.body[0]))
    # `unused` goes (only a local generator feeds it); the generator stays (a call nothing proves harmless)
    assert helper == ("def helper(x):\n    gen = torch.Generator().manual_seed(7)\n"
                      "    return torch.compile(x, mode=None) * 2")
    assert [ast.unparse(i) for i in specialiser.hoisted] == ["import torch"]
    assert ast.unparse(specialiser.function(tree.body[1])) == "def caller(y):\n    return helper(y)"


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
    assert "observed: compile_error in call 0 (1 tokens): torch._dynamo.exc.UserError" in run.stdout
    import transformers

    first = run.stdout.splitlines()[0]  # what a bug report needs: versions and which transformers ran
    assert f"transformers {transformers.__version__} ({os.path.dirname(transformers.__file__)})" in first
    assert first.startswith("Python ") and "GPU: " in first


@pytest.mark.slow
def test_transformers_degraded_pass_reproduces(tmp_path):
    """A recompile storm is a degraded pass in the harness; the script collects the same signals and says so."""
    from harness.measure.cell_run import run_cell
    from harness.measure.signals import enable_logs

    matrix = _matrix()
    cell = _cell(matrix, "transformers-eager-default-float32-breaks-allowed-cpu-decode")
    enable_logs()  # as every executor does before its first cell
    outcome = run_cell(cell_spec(matrix, cell))
    assert outcome["status"] == "pass" and outcome["signals"]["degraded"], outcome["signals"].get("degraded")
    out = tmp_path / "repro.py"
    out.write_text(script(matrix, cell, observed=outcome))
    text = out.read_text()
    assert "class SignalCollector" in text and "enable_logs()" in text  # the harness's collector, not a stand-in
    assert "; degraded: recompile_storm" in text.split('"""')[1]  # the header says what the harness saw
    run = _standalone(out, tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr[-3000:]
    observed = next(line for line in run.stdout.splitlines() if line.startswith("observed: "))
    assert observed.startswith("observed: pass; degraded: recompile_storm: ") and "> 1" in observed
    assert "a clean pass: at most 1 recompiles" in run.stdout and "did not reproduce" not in run.stdout


@pytest.mark.slow
def test_transformers_script_builds_the_harness_experts_and_inputs(tmp_path):
    """Same family, config, seeded weights and inputs: the script's per-call errors are the harness's."""
    from harness.measure.cell_run import run_cell

    matrix = _matrix()
    cell_id = "transformers-grouped_mm-uncompiled-float32-cpu-decode"
    harness = run_cell(cell_spec(matrix, _cell(matrix, cell_id)))
    assert harness["status"] == "pass"
    run = _standalone(_write(tmp_path, matrix, cell_id), tmp_path)
    assert run.returncode == 0 and "did not reproduce" in run.stdout, run.stderr[-3000:]
    printed = re.findall(r"rel error (\S+)$", run.stdout, re.M)
    assert printed == [f"{call['rel_error']:.3g}" for call in harness["signals"]["calls"]]


@pytest.mark.slow
def test_transformers_grouped_mm_compiled_cell_passes(tmp_path):
    matrix = _matrix()
    out = _write(tmp_path, matrix, "transformers-grouped_mm-default-float32-fullgraph-cpu-decode")
    assert "torch.compile(forward, mode=None, fullgraph=True)" in out.read_text()
    run = _standalone(out, tmp_path)
    assert run.returncode == 0 and "did not reproduce: everything passed" in run.stdout, run.stderr[-3000:]
    assert len(re.findall(r"^call \d \(\d+ tokens\): rel error ", run.stdout, re.M)) == 3


# transformers' grouped_mm key running its batched_mm function: dispatch says grouped_mm, bmm runs.
_SWAP_GROUPED_FOR_BATCHED = ("from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS as F; "
                             "F._global_mapping['grouped_mm'] = F._global_mapping['batched_mm']")


@pytest.mark.slow
def test_transformers_misdispatch_is_caught_by_the_harness_and_its_script_alike(tmp_path, monkeypatch):
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    from harness.measure.cell_run import run_cell

    matrix = _matrix()
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
    # The harness's own dispatch proof ran in the script: the same record, word for word.
    assert (f"observed: runtime_error in profile: MisDispatch: {harness['error']['message']}" in run.stdout), \
        run.stdout
    assert "expected ops ['grouped_mm'] not seen; ops of another backend ['bmm'] seen" in run.stdout
    assert "did not reproduce" not in run.stdout


@pytest.mark.slow
def test_training_script_checks_gradients_like_the_harness(tmp_path):
    """Forward + backward, every gradient against the float64 oracle: the harness's numbers, per call."""
    from harness.measure.cell_run import run_cell

    matrix = _matrix()
    cell_id = "transformers-eager-uncompiled-float32-cpu-decode-training"
    harness = run_cell(cell_spec(matrix, _cell(matrix, cell_id)))
    assert harness["status"] == "pass"
    run = _standalone(_write(tmp_path, matrix, cell_id), tmp_path)
    assert run.returncode == 0 and "did not reproduce" in run.stdout, run.stderr[-3000:]
    printed = re.findall(r"grad rel error (\S+)$", run.stdout, re.M)
    assert printed == [f"{call['grad_rel_error']:.3g}" for call in harness["signals"]["calls"]]
    for name, value in harness["signals"]["grad_errors"].items():  # hidden_states, routing_weights, weights
        assert f"gradient of {name}: max relative error {value:.3g}" in run.stdout


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
    assert "def _train_all" in text  # the harness's own loop
    run = _standalone(out, tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr[-3000:]
    assert "data-dependent" in run.stderr and "torch._dynamo.exc" in run.stderr
    assert "observed: compile_error in call 0 (1 tokens): torch._dynamo.exc.UserError" in run.stdout


@pytest.mark.slow
def test_model_script_runs_the_model_checks_then_fails_as_observed(tmp_path):
    """GPT-OSS model, eager experts: the uncompiled checks pass, the fullgraph whole-model compile fails."""
    matrix = _matrix()
    run = _standalone(_write(tmp_path, matrix, "transformers-eager-default-bfloat16-fullgraph-cpu-decode"
                                               "-gpt_oss-model"), tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr[-3000:]
    for check in ("load_string", "load_dict_global", "runtime_switch"):
        assert f"model check: {{'check': '{check}', 'ok': True" in run.stdout
    assert "model check: {'check': 'compiled_forward', 'ok': False}" in run.stdout
    assert "data-dependent" in run.stderr and "torch._dynamo.exc" in run.stderr


@pytest.mark.slow
def test_model_script_passes_every_check_of_a_passing_cell(tmp_path):
    """Qwen2-MoE with grouped_mm: load forms, runtime switch, Qwen3-VL sub-configs, compiled forward, generate()."""
    matrix = _matrix()
    run = _standalone(_write(tmp_path, matrix, "transformers-grouped_mm-default-bfloat16-fullgraph-cpu"
                                               "-decode-model"), tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert "per_subconfig" in run.stdout and "aten::_grouped_mm" in run.stdout
    assert "'new_tokens': 4" in run.stdout and "did not reproduce: everything passed" in run.stdout
