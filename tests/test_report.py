"""The support table from synthetic results: rows, notes, environments, claims, Markdown, HTML, JSON, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cells import Cell
from harness.cmd_report import render
from harness.errors import HarnessError
from harness.report_claims import compare, read_claims
from harness.report_inputs import load_observations
from harness.report_merge import merge
from harness.report_model import build_table
from tests.conftest import REPO_ROOT, run_harness

CLAIMS = str(REPO_ROOT / "reports" / "docs_claims.md")
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def cell(backend, mode="default", dtype="float32", fullgraph=False, status="pass", device="cpu", shape="decode",
         path=None, error=None, verdict=None, **signals):
    """A results cell record as the harness writes it (only what the reports read)."""
    c = Cell("reference", backend, mode, dtype, None if mode == "uncompiled" else fullgraph, device, shape)
    if error is None and status != "pass":
        error = {"type": "torch._dynamo.exc.Unsupported", "message": f"{backend} cannot {status}", "phase": "call 0"}
    return {"id": c.id, **c.axis_values(), "status": status,
            "expected": {"outcome": "pass", "statuses": None, "error_match": None, "reason": "default",
                         "rule_line": None},
            "verdict": verdict or ("ok" if status == "pass" else "regression"), "verdict_reason": "synthetic",
            "error": error, "signals": {"grouped_mm_path": path, "max_rel_error": 1e-6, "compile_s": 1.0, **signals},
            "duration_s": 1.0, "repro": f"python -m harness run --matrix matrix.yaml --cell {c.id}"}


def doc(cells, torch="2.13.0+cpu", transformers="5.17.0", cc=None, **top):
    """A results document (schema 1) around `cells`."""
    env = {"torch": torch, "transformers": transformers, "cuda_available": cc is not None,
           "device_name": "NVIDIA H100" if cc else "cpu", "compute_capability": cc}
    return {"schema": 1, "complete": True, "interrupted": False, "environment": env, "cells": cells, **top}


def write(path: Path, document) -> str:
    """Write a document as JSON and return its path as a string."""
    path.write_text(json.dumps(document))
    return str(path)


def cpu_matrix(fallback_dtypes=("float16", "float32")):
    """A cpu matrix like the real one: eager fails fullgraph; grouped_mm takes the fallback for some dtypes."""
    cells = []
    for mode in MODES:
        for dtype in ("bfloat16", "float16", "float32"):
            for fullgraph in (True, False):
                cells.append(cell("batched_mm", mode, dtype, fullgraph))
                cells.append(cell("eager", mode, dtype, fullgraph, status="compile_error" if fullgraph else "pass",
                                  verdict="ok"))
                path = "fallback" if dtype in fallback_dtypes else "native"
                cells.append(cell("grouped_mm", mode, dtype, fullgraph, path=path))
    cells.append(cell("eager", "uncompiled"))
    return cells


def table_of(*documents, tmp_path):
    paths = [write(tmp_path / f"r{i}.json", d) for i, d in enumerate(documents)]
    return build_table(merge(load_observations(paths)))


def test_rows_in_docs_order_with_paths_and_fullgraph(tmp_path):
    table = table_of(doc(cpu_matrix()), tmp_path=tmp_path)
    rows = {row.label: row.summary for row in table.rows}
    assert [row.label for row in table.rows] == ["grouped_mm", "grouped_mm (fallback)", "batched_mm", "eager"]
    assert rows["grouped_mm"].dtypes == ("bfloat16",)
    assert rows["grouped_mm (fallback)"].dtypes == ("float16", "float32")
    assert rows["batched_mm"].modes == MODES and rows["batched_mm"].fullgraph == "Yes"
    assert rows["eager"].fullgraph == "No"


def test_failures_and_partial_evidence_become_notes_on_their_column(tmp_path):
    table = table_of(doc(cpu_matrix()), tmp_path=tmp_path)
    eager = next(row for row in table.rows if row.label == "eager")
    fullgraph_note = table.notes[eager.notes["fullgraph"][0] - 1]
    assert "compile_error" in fullgraph_note and "eager cannot compile_error" in fullgraph_note
    assert "every mode" in fullgraph_note and "every dtype" in fullgraph_note
    assert any("Partial evidence" in table.notes[n - 1] for n in eager.notes["implementation"])
    assert all(row.notes["implementation"] == eager.notes["implementation"] for row in table.rows)  # one note


def test_devices_that_differ_are_said_so_and_the_row_keeps_what_works_everywhere(tmp_path):
    cuda = []
    for mode in MODES:
        for fullgraph in (True, False):
            failing = mode in ("reduce-overhead", "max-autotune")
            cuda.append(cell("grouped_mm", mode, "bfloat16", fullgraph, device="cuda",
                             status="runtime_error" if failing else "pass", path=None if failing else "native"))
    table = table_of(doc(cpu_matrix()), doc(cuda, cc="9.0"), tmp_path=tmp_path)
    row = next(row for row in table.rows if row.label == "grouped_mm")
    assert row.summary.modes == ("default", "max-autotune-no-cudagraphs")
    assert row.summary.fullgraph == "Yes"  # the cuda-graph modes fail either way: not blamed on fullgraph
    assert not row.partial
    texts = [table.notes[n - 1] for n in row.notes["implementation"]]
    assert any("differs by environment" in t and "cuda sm90" in t for t in texts)
    assert any("path is the one every passing cell" in t for t in texts)  # failing cells: path inferred
    assert set(row.per_env) == {"torch2.13.0-transformers5.17.0-cpu", "torch2.13.0-transformers5.17.0-cuda-sm90"}


def test_markdown_is_deterministic_whatever_the_input_order(tmp_path):
    cells = cpu_matrix()
    a = write(tmp_path / "a.json", doc(cells))
    b = write(tmp_path / "b.json", doc(list(reversed(cells))))
    first = render([a], "markdown", None, CLAIMS, "cmd")
    assert first == render([b], "markdown", None, CLAIMS, "cmd")
    assert "| Implementation" in first and "fullgraph=True" in first
    assert "_Generated by `cmd` from 73 measured cells: torch 2.13.0, transformers 5.17.0, cpu._" in first


def test_claims_check_reports_what_disagrees(tmp_path):
    table = table_of(doc(cpu_matrix()), tmp_path=tmp_path)
    checks = {(c.label, c.aspect): c for c in compare(read_claims(CLAIMS), table)}
    modes = checks[("grouped_mm", "modes")]
    assert modes.agrees is False and "working but not claimed: reduce-overhead, max-autotune" in modes.detail
    assert checks[("eager", "fullgraph=True")].agrees is True
    fallback = checks[("grouped_mm (fallback)", "dtypes")]
    assert fallback.agrees is None and fallback.detail == "claimed, not measured: bfloat16"  # never on that path


def test_a_claims_page_without_the_table_is_bad_input(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# nothing here\n")
    with pytest.raises(HarnessError, match="no table"):
        read_claims(str(page))


def test_html_is_one_self_contained_page_with_every_failing_cell_explained(tmp_path):
    cells = cpu_matrix()
    cells.append(cell("batched_mm", "default", "float32", False, shape="prefill", status="mismatch",
                      error={"type": "Mismatch", "message": "max relative error 0.5 > tolerance 0.0001"}))
    page = render([write(tmp_path / "r.json", doc(cells))], "html", None, CLAIMS, "cmd")
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert "src=" not in page and "href=\"http" not in page  # nothing fetched from elsewhere
    bad = "reference-batched_mm-default-float32-breaks-allowed-cpu-prefill"
    assert 'class="c regression"' in page and f"#c-torch2.13.0-transformers5.17.0-cpu--{bad}" in page
    assert "max relative error 0.5" in page and f"--cell {bad}" in page and f"harness repro {bad}" in page


def test_json_format_has_rows_notes_and_claims(tmp_path):
    data = json.loads(render([write(tmp_path / "r.json", doc(cpu_matrix()))], "json", None, CLAIMS, "cmd"))
    assert [row["label"] for row in data["table"]["rows"]][0] == "grouped_mm"
    assert data["table"]["notes"][0]["number"] == 1 and data["claims"]


def test_cli_writes_the_report_and_rejects_a_corrupt_file(tmp_path):
    good = write(tmp_path / "r.json", doc(cpu_matrix()))
    out = tmp_path / "report.html"
    proc = run_harness("report", good, "--format", "html", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().startswith("<!DOCTYPE html>")
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": 1, "cells": [')
    proc = run_harness("report", str(bad))
    assert proc.returncode == 2 and str(bad) in proc.stderr and "not valid JSON" in proc.stderr
    wrong = write(tmp_path / "wrong.json", {"schema": 1, "environment": {}, "cells": [{"id": "x"}]})
    proc = run_harness("report", wrong)
    assert proc.returncode == 2 and "cells[0].source" in proc.stderr


def test_report_commands_need_no_torch(tmp_path):
    """The CI report job installs only pyyaml: importing torch there would fail."""
    results = write(tmp_path / "r.json", doc(cpu_matrix()))
    code = ("import sys; sys.modules['torch'] = None; from harness.cli import main; "
            f"sys.exit(main(['report', {results!r}, '--format', 'html', '--out', {str(tmp_path / 'r.html')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_a_pass_whose_profile_shows_no_path_is_not_counted_as_native(tmp_path):
    """torch 2.14.1's inductor hides the fallback op from the profiler: such cells get their own row."""
    newer = [dict(c, signals={**c["signals"], "grouped_mm_path": None})
             if c["backend"] == "grouped_mm" and c["signals"]["grouped_mm_path"] == "fallback" else c
             for c in cpu_matrix()]
    table = table_of(doc(cpu_matrix()), doc(newer, torch="2.14.1"), tmp_path=tmp_path)
    rows = {row.label: row for row in table.rows}
    assert rows["grouped_mm"].summary.dtypes == ("bfloat16",)
    unknown = rows["grouped_mm (path not observed)"]
    assert unknown.summary.dtypes == ("float16", "float32")
    texts = [table.notes[n - 1] for n in unknown.notes["implementation"]]
    assert any("seen only in torch 2.14.1" in t for t in texts)
    assert any("seen only in torch 2.13.0" in table.notes[n - 1]
               for n in rows["grouped_mm (fallback)"].notes["implementation"])
