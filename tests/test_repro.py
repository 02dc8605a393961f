"""`repro CELL_ID`: a standalone script (torch only for reference cells) that reproduces the cell."""

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
    with pytest.raises(HarnessError, match="kernel-scope inference"):
        script(matrix, Cell("reference", "eager", "default", "float32", True, "cpu", "decode", phase="training"))
