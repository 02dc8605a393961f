"""`update-expectations`: measured outcomes that contradict the docs' rules become generated rules."""

from __future__ import annotations

from harness.cells.cell import expand_cells, expectation_for
from harness.config.load import load_matrix
from harness.cli.main import main
from tests.conftest import fixture_backend, matrix_doc, write_matrix
from tests.test_report import doc, write

RULES = [{"match": {"backend": "healthy", "fullgraph": True}, "expect": "fail", "reason": "docs: no fullgraph"}]


def _record(cell_id, status, error=None):
    parts = cell_id.split("-")
    fullgraph = {"fullgraph": True, "breaks": False}.get(parts[4], None) if parts[2] != "uncompiled" else None
    return {"id": cell_id, "source": "user", "backend": parts[1], "mode": parts[2], "dtype": "float32",
            "fullgraph": fullgraph, "device": "cpu", "shape": "prefill", "layout": "default", "scope": "kernel",
            "phase": "inference", "status": status, "expected": {"outcome": "pass"}, "verdict": "ok", "verdict_reason": "",
            "error": error, "signals": {}, "repro": ""}


class _Proc:
    """The exit code and output of one in-process CLI call (the subprocess would re-import torch each time)."""

    def __init__(self, capsys, *args):
        self.returncode = main(list(args))
        captured = capsys.readouterr()
        self.stdout, self.stderr = captured.out, captured.err


def _matrix(tmp_path):
    return write_matrix(tmp_path / "matrix.yaml", matrix_doc({"healthy": fixture_backend("healthy")},
                                                             expectations=RULES))


def test_unexpected_pass_and_regression_become_rules_then_nothing_changes(tmp_path, capsys):
    matrix = _matrix(tmp_path)
    fullgraph = "user-healthy-default-float32-fullgraph-cpu-prefill"
    partial = "user-healthy-default-float32-breaks-allowed-cpu-prefill"
    results = write(tmp_path / "r.json", doc([
        _record(fullgraph, "pass"),  # docs say it fails: an improvement to accept
        _record(partial, "mismatch", {"type": "Mismatch", "message": "1 % off"}),  # docs say pass
        _record("user-healthy-uncompiled-float32-cpu-prefill", "pass")]))
    check = _Proc(capsys, "update-expectations", results, "--matrix", str(matrix), "--check")
    assert check.returncode == 1 and '+ match: {source: "user", backend: "healthy", fullgraph: true} ' \
        'expect: pass reason: "measured pass on' in check.stdout and "(1 cell(s))" in check.stdout
    proc = _Proc(capsys, "update-expectations", results, "--matrix", str(matrix))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '+ match: {source: "user", backend: "healthy", fullgraph: false} expect: fail status: [mismatch] ' \
        'error_match: "Mismatch"' in proc.stdout
    loaded = load_matrix(str(matrix), import_backends=False)
    expected = {cell.id: expectation_for(cell, loaded.rules) for cell in expand_cells(loaded)}
    assert expected[fullgraph].expect == "pass" and "measured pass" in expected[fullgraph].reason
    assert expected[partial].expect == "fail" and expected[partial].statuses == ("mismatch",)
    assert expected["user-healthy-uncompiled-float32-cpu-prefill"].expect == "pass"
    text = matrix.read_text()
    assert text.count("compile-matrix:measured-begin") == 1 and "docs: no fullgraph" in text

    again = _Proc(capsys, "update-expectations", results, "--matrix", str(matrix), "--check")
    assert again.returncode == 0 and "already match" in again.stdout

    # The fullgraph cell fails again as the docs say: its generated rule goes, the other one stays.
    back = write(tmp_path / "back.json", doc([_record(fullgraph, "compile_error",
                                                      {"type": "Unsupported", "message": "graph break"})]))
    proc = _Proc(capsys, "update-expectations", back, "--matrix", str(matrix))
    assert proc.returncode == 0 and '- match: {source: "user", backend: "healthy", fullgraph: true} ' \
        'expect: pass' in proc.stdout and proc.stdout.count("\n+ ") + proc.stdout.startswith("+ ") == 0
    loaded = load_matrix(str(matrix), import_backends=False)
    rules = {cell.id: expectation_for(cell, loaded.rules) for cell in expand_cells(loaded)}
    assert rules[fullgraph].reason == "docs: no fullgraph" and rules[partial].statuses == ("mismatch",)


def test_unknown_cells_and_bad_files_are_reported(tmp_path, capsys):
    matrix = _matrix(tmp_path)
    results = write(tmp_path / "r.json", doc([_record("user-other-default-float32-fullgraph-cpu-prefill", "pass")]))
    proc = _Proc(capsys, "update-expectations", results, "--matrix", str(matrix))
    assert proc.returncode == 0 and "skip user-other" in proc.stdout
    proc = _Proc(capsys, "update-expectations", str(tmp_path / "missing.json"), "--matrix", str(matrix))
    assert proc.returncode == 2 and "missing.json" in proc.stderr


def test_cells_with_one_claim_become_one_rule_a_person_would_write(tmp_path, capsys):
    # Every dtype of the fullgraph cells fails the same way, against the docs' "pass": one rule, no dtype in it.
    matrix = write_matrix(tmp_path / "matrix.yaml", matrix_doc(
        {"healthy": fixture_backend("healthy")}, axes={"dtype": ["bfloat16", "float16", "float32"]}))
    cells = [f"user-healthy-default-{dtype}-fullgraph-cpu-prefill" for dtype in ("bfloat16", "float16", "float32")]
    records = [dict(_record(cell_id, "compile_error", {"type": "torch._dynamo.exc.Unsupported", "message": "m"}),
                    dtype=cell_id.split("-")[3]) for cell_id in cells]
    results = write(tmp_path / "r.json", doc(records))
    proc = _Proc(capsys, "update-expectations", results, "--matrix", str(matrix))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    added = [line for line in proc.stdout.splitlines() if line.startswith("+ ")]
    assert len(added) == 1 and "(3 cell(s))" in added[0] and "dtype" not in added[0]
    assert '{source: "user", backend: "healthy", fullgraph: true}' in added[0]
    loaded = load_matrix(str(matrix), import_backends=False)
    decided = {cell.id: expectation_for(cell, loaded.rules).expect for cell in expand_cells(loaded)}
    assert [cell_id for cell_id, expect in decided.items() if expect == "fail"] == cells
