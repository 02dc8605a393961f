"""The support table from synthetic results: rows, notes, environments, claims, Markdown, HTML, JSON, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cells.cell import Cell
from harness.report.render import render
from harness.report.docs_table import build_docs_table
from harness.errors import HarnessError
from harness.report.claims import compare, read_claims
from harness.results.observations import load_observations
from harness.results.merge import merge
from tests.conftest import REPO_ROOT, run_harness

CLAIMS = str(REPO_ROOT / "reports" / "docs_claims.md")
MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def cell(backend, mode="default", dtype="float32", fullgraph=False, status="pass", device="cpu", shape="decode",
         path=None, error=None, verdict=None, source="reference", layout="default", phase="inference", **signals):
    """A results cell record as the harness writes it (only what the reports read)."""
    c = Cell(source, backend, mode, dtype, None if mode == "uncompiled" else fullgraph, device, shape, layout,
             "kernel", phase)
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
           "device_name": "NVIDIA H200" if cc else "cpu", "compute_capability": cc}
    return {"schema": 1, "complete": True, "interrupted": False, "environment": env, "cells": cells, **top}


def write(path: Path, document) -> str:
    """Write a document as JSON and return its path as a string."""
    path.write_text(json.dumps(document))
    return str(path)


def cpu_matrix(fallback_dtypes=("float16", "float32"), source="reference", device="cpu"):
    """A matrix like the real one: eager fails fullgraph; grouped_mm takes the fallback for some dtypes."""
    cells = []
    for mode in MODES:
        for dtype in ("bfloat16", "float16", "float32"):
            for fullgraph in (True, False):
                cells.append(cell("batched_mm", mode, dtype, fullgraph, source=source, device=device))
                cells.append(cell("eager", mode, dtype, fullgraph, status="compile_error" if fullgraph else "pass",
                                  verdict="ok", source=source, device=device))
                path = "fallback" if dtype in fallback_dtypes else "native"
                cells.append(cell("grouped_mm", mode, dtype, fullgraph, path=path, source=source, device=device))
    cells.append(cell("eager", "uncompiled", source=source, device=device))
    return cells


def cuda_grouped_mm(source="reference"):
    """grouped_mm on an sm 9.0 GPU: the CUDA-graph modes fail."""
    cells = []
    for mode in MODES:
        for fullgraph in (True, False):
            failing = mode in ("reduce-overhead", "max-autotune")
            cells.append(cell("grouped_mm", mode, "bfloat16", fullgraph, device="cuda", source=source,
                              status="runtime_error" if failing else "pass", path=None if failing else "native"))
    return cells


def table_of(*documents, tmp_path, source="reference"):
    paths = [write(tmp_path / f"r{i}.json", d) for i, d in enumerate(documents)]
    return build_docs_table(merge(load_observations(paths)), source)


def test_rows_are_the_docs_rows_in_the_docs_order(tmp_path):
    table = table_of(doc(cpu_matrix()), tmp_path=tmp_path)
    assert [row.label for row in table.rows] == ["grouped_mm", "grouped_mm (fallback)", "batched_mm", "eager"]
    rows = {row.label: row.cells() for row in table.rows}
    assert rows["grouped_mm"] == ("grouped_mm", "all", "bfloat16", "Yes")
    assert rows["grouped_mm (fallback)"] == ("grouped_mm (fallback)", "all", "float16, float32", "Yes")
    assert rows["batched_mm"] == ("batched_mm", "all", "bfloat16, float16, float32", "Yes")
    assert rows["eager"] == ("eager", "all", "bfloat16, float16, float32", "No")


def test_platforms_that_differ_are_said_inside_the_cell(tmp_path):
    table = table_of(doc(cpu_matrix()), doc(cuda_grouped_mm(), cc="9.0"), tmp_path=tmp_path)
    row = next(row for row in table.rows if row.label == "grouped_mm")
    assert row.modes == "None, max-autotune-no-cudagraphs (CUDA sm 9.0); all (CPU)"
    assert row.fullgraph == "Yes"  # the CUDA-graph modes fail either way: not blamed on fullgraph
    assert set(row.platforms) == {"CPU", "CUDA sm 9.0"}
    assert any("CUDA sm 9.0 (NVIDIA H200)" in note for note in table.notes)
    assert any("other GPU architectures were not measured" in note for note in table.notes)


def test_nothing_working_is_never_written_like_mode_none(tmp_path):
    broken = [dict(c, status="compile_error", verdict="regression") if c["backend"] == "batched_mm" else c
              for c in cpu_matrix()]
    row = next(row for row in table_of(doc(broken), tmp_path=tmp_path).rows if row.label == "batched_mm")
    assert (row.modes, row.dtypes) == ("no mode works", "no dtype works")


def test_cpu_only_evidence_says_the_gpu_was_not_measured(tmp_path):
    table = table_of(doc(cpu_matrix()), tmp_path=tmp_path)
    assert any("No GPU was measured" in note for note in table.notes)
    assert len(table.notes) <= 3


def test_only_the_tables_claim_goes_into_the_table(tmp_path):
    cells = cpu_matrix(source="transformers")
    cells += [cell("grouped_mm", layout="gpt_oss", source="transformers", status="mismatch"),
              cell("batched_mm", phase="training", source="transformers", status="compile_error")]
    table = table_of(doc(cells), tmp_path=tmp_path, source="transformers")
    assert [row.label for row in table.rows] == ["grouped_mm", "grouped_mm (fallback)", "batched_mm", "eager"]
    assert table.cells == len(cells) - 2
    text = render([write(tmp_path / "t.json", doc(cells))], "markdown", None, CLAIMS, "cmd")
    beyond = text[text.index("## Outside the table's claims"):]
    assert "GPT-OSS experts" in beyond and "training" in beyond and "grouped_mm cannot mismatch" in beyond


def test_markdown_is_deterministic_and_speaks_the_docs_vocabulary(tmp_path):
    cells = cpu_matrix(source="transformers")
    a = write(tmp_path / "a.json", doc(cells))
    b = write(tmp_path / "b.json", doc(list(reversed(cells))))
    first = render([a], "markdown", None, CLAIMS, "cmd")
    assert first == render([b], "markdown", None, CLAIMS, "cmd")
    table = first[first.index("| Implementation"):first.index("<!-- generated")]
    assert "[transformers]" not in table and "tf_" not in table and "none" not in table
    assert "<!-- generated by `cmd` from 73 measured transformers cells: torch 2.13.0, transformers 5.17.0, cpu -->" \
        in first


def test_claims_are_checked_for_transformers_rows_per_platform(tmp_path):
    table = table_of(doc(cpu_matrix(source="transformers")), doc(cuda_grouped_mm("transformers"), cc="9.0"),
                     tmp_path=tmp_path, source="transformers")
    checks = {(c.label, c.platform, c.aspect): c for c in compare(read_claims(CLAIMS), table)}
    cpu_modes = checks[("grouped_mm", "CPU", "modes")]
    assert cpu_modes.verdict == "stale" and "works, not documented: reduce-overhead, max-autotune" in cpu_modes.detail
    assert checks[("grouped_mm", "CUDA sm 9.0", "modes")].verdict == "holds"
    assert checks[("eager", "CPU", "fullgraph=True")].verdict == "holds"
    fallback = checks[("grouped_mm (fallback)", "CPU", "dtypes")]
    assert fallback.agrees is None and fallback.detail == "documented, not measured: bfloat16"  # never on that path


def test_a_documented_thing_that_fails_is_wrong(tmp_path):
    broken = [dict(c, status="compile_error", verdict="regression")
              if c["backend"] == "batched_mm" and c["fullgraph"] else c for c in cpu_matrix(source="transformers")]
    table = table_of(doc(broken), tmp_path=tmp_path, source="transformers")
    check = next(c for c in compare(read_claims(CLAIMS), table)
                 if (c.label, c.aspect) == ("batched_mm", "fullgraph=True"))
    assert check.verdict == "wrong" and check.measured == "No"


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
    assert page.startswith("<!DOCTYPE html>")
    assert "src=" not in page and "href=\"http" not in page  # nothing fetched from elsewhere
    bad = "reference-batched_mm-default-float32-breaks-allowed-cpu-prefill"
    assert "max relative error 0.5" in page and f"--cell {bad}" in page


def test_json_format_has_rows_notes_claims_and_what_lies_outside(tmp_path):
    data = json.loads(render([write(tmp_path / "r.json", doc(cpu_matrix()))], "json", None, CLAIMS, "cmd"))
    assert [row["label"] for row in data["table"]["rows"]][0] == "grouped_mm"
    assert data["table"]["notes"] and data["claims"] and data["beyond_table"] == []
    assert {c["verdict"] for c in data["claims"]} <= {"holds", "wrong", "stale", "not measured"}


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
    code = ("import sys; sys.modules['torch'] = None; from harness.cli.main import main; "
            f"sys.exit(main(['report', {results!r}, '--format', 'html', '--out', {str(tmp_path / 'r.html')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_a_pass_whose_profile_shows_no_path_takes_the_path_of_the_same_cell_elsewhere(tmp_path):
    """torch 2.14.1's inductor hides transformers' fallback op from the profiler."""
    def hidden(cells):
        return [dict(c, signals={**c["signals"], "grouped_mm_path": None})
                if c["backend"] == "grouped_mm" and c["signals"]["grouped_mm_path"] == "fallback" else c
                for c in cells]

    table = table_of(doc(cpu_matrix()), doc(hidden(cpu_matrix()), torch="2.14.1"), tmp_path=tmp_path)
    rows = {row.label: row for row in table.rows}
    assert list(rows) == ["grouped_mm", "grouped_mm (fallback)", "batched_mm", "eager"]
    assert rows["grouped_mm (fallback)"].dtypes == "float16, float32"
    assert any("did not show which grouped_mm path ran with torch 2.14.1" in note for note in table.notes)
    alone = table_of(doc(hidden(cpu_matrix()), torch="2.14.1"), tmp_path=tmp_path)  # nothing to take it from
    assert "grouped_mm (path not observed)" in [row.label for row in alone.rows]
    assert any("(path not observed)" in note for note in alone.notes)
