"""Broken copies of transformers' moe.py are caught as regressions exactly where they bite, nowhere else.

Each mutant (tests/mutants/moe_mutants.py) is applied to a symlink copy of the installed transformers
and run through the CLI with --transformers-src on a few cells: the cells it must break and controls it
must not touch (other backends, other dtypes, uncompiled/compiled), so a false alarm fails too.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_cells, run_harness, write_matrix
from tests.mutants.moe_mutants import MUTANTS, installed_package, make_tree, patch_source

pytest.importorskip("transformers")

MATRIX = {
    "schema": 2,
    "backends": {"transformers": ["batched_mm", "grouped_mm"]},
    "axes": {"mode": ["uncompiled", "default"], "dtype": ["float32", "float16", "bfloat16"],
             "fullgraph": [True, False], "device": ["cpu"], "shape": ["decode"], "layout": ["default"]},
    "shapes": {"decode": {"tokens": [1, 3], "hidden": 16, "intermediate": 8, "experts": 4, "top_k": 2,
                          "routing": "uniform"}},
    "tolerances": {"bfloat16": 3e-2, "float16": 5e-3, "float32": 1e-4},
    "time_limit_s": 240,
    "max_recompiles": 1,
}


def _id(backend: str, mode: str, dtype: str, fullgraph: bool | None = None) -> str:
    graph = "" if mode == "uncompiled" else ("-fullgraph" if fullgraph else "-breaks-allowed")
    return f"transformers-{backend}-{mode}-{dtype}{graph}-cpu-decode"


# Per mutant: the cells it must break and the controls around them (few: each compiled cell costs seconds).
CELLS = {
    "batched_data_dependent": [
        _id("batched_mm", "uncompiled", "float32"), _id("batched_mm", "default", "float32", True),
        _id("batched_mm", "default", "float32", False), _id("grouped_mm", "default", "float32", True)],
    "grouped_numeric_1pct": [
        _id("grouped_mm", "uncompiled", "float32"), _id("grouped_mm", "default", "float32", True),
        _id("grouped_mm", "default", "bfloat16", True), _id("batched_mm", "default", "float32", True)],
    "fallback_raises_float16": [
        _id("grouped_mm", "uncompiled", "float16"), _id("grouped_mm", "default", "float16", True),
        _id("grouped_mm", "default", "float32", True), _id("batched_mm", "default", "float16", True)],
}


def test_every_mutant_applies_to_the_installed_transformers():
    with open(f"{installed_package()}/integrations/moe.py", encoding="utf-8") as fh:
        source = fh.read()
    for mutant in MUTANTS.values():
        patched = patch_source(source, mutant)
        assert "MUTANT" in patched and patched != source
        compile(patched, "moe.py", "exec")


def test_mutant_tree_is_the_installed_package_but_moe(tmp_path):
    tree = make_tree(str(tmp_path / "src"), "grouped_numeric_1pct")
    root = tmp_path / "src" / "transformers"
    assert (root / "__init__.py").is_symlink() and (root / "models").is_symlink()
    assert not (root / "integrations" / "moe.py").is_symlink()
    assert (root / "integrations" / "deepgemm.py").is_symlink()
    assert not (root / "integrations" / "__pycache__").exists()
    assert tree == str(tmp_path / "src")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_is_a_regression_exactly_where_it_bites(name, tmp_path):
    mutant = MUTANTS[name]
    tree = make_tree(str(tmp_path / "src"), name)
    matrix = write_matrix(tmp_path / "matrix.yaml", MATRIX)
    out = tmp_path / "out"
    cell_args = [arg for cell in CELLS[name] for arg in ("--cell", cell)]
    proc = run_harness("run", "--matrix", str(matrix), "--out", str(out), "--transformers-src", tree, "-n", "1",
                       *cell_args)
    cells = load_cells(out)
    assert sorted(cells) == sorted(CELLS[name]), proc.stdout[-3000:] + proc.stderr[-3000:]
    must_break = {cell_id for cell_id, cell in cells.items() if mutant.bites(cell)}
    assert must_break and must_break != set(cells), "each mutant run needs both victims and controls"
    regressions = {cell_id for cell_id, cell in cells.items() if cell["verdict"] == "regression"}
    assert regressions == must_break, {cell_id: (cell["status"], cell["error"]) for cell_id, cell in cells.items()}
    for cell_id in must_break:
        assert cells[cell_id]["status"] == mutant.status, cells[cell_id]["error"]
    for cell_id in set(cells) - must_break:
        assert cells[cell_id]["status"] == "pass", cells[cell_id]["error"]
    assert proc.returncode == 1
    environment = json.loads((out / "results.json").read_text())["environment"]
    assert environment["transformers_from_src"] is True
    assert environment["transformers_path"] == "<transformers-src>/transformers"  # portable: no absolute path
