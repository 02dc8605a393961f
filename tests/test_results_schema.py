"""results.json is versioned: today's files carry schema 2; schema-1 files still load, in today's vocabulary."""

from __future__ import annotations

import json

import pytest

from harness.errors import HarnessError
from harness.results.results_json import SCHEMA_VERSION, read_results


def _record(cell_id: str, source: str, backend: str) -> dict:
    return {"id": cell_id, "source": source, "backend": backend, "mode": "default", "dtype": "bfloat16",
            "fullgraph": True, "device": "cuda", "shape": "decode", "layout": "deepseek_v2", "scope": "kernel",
            "phase": "inference", "status": "mismatch", "expected": {"outcome": "observe"}, "verdict": "ok",
            "error": None, "signals": {}, "repro": f"python -m harness run --cell {cell_id}"}


def test_a_schema_1_file_loads_with_backends_named_after_their_implementation(tmp_path):
    old = "transformers-tf_grouped_mm_families-default-bfloat16-fullgraph-cuda-decode-deepseek_v2"
    cells = [_record(old, "transformers", "tf_grouped_mm_families"),
             _record("reference-eager-default-bfloat16-fullgraph-cuda-decode", "reference", "eager"),
             _record("transformers-tf_deepgemm-default-bfloat16-fullgraph-cuda-decode", "transformers", "tf_deepgemm")]
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"schema": 1, "environment": {}, "cells": cells}))
    loaded = read_results(str(path))["cells"]
    new = "transformers-grouped_mm-default-bfloat16-fullgraph-cuda-decode-deepseek_v2"
    assert [c["id"] for c in loaded] == [new, cells[1]["id"], "transformers-deepgemm-default-bfloat16-fullgraph-cuda-decode"]
    assert [c["backend"] for c in loaded] == ["grouped_mm", "eager", "deepgemm"]
    assert loaded[0]["repro"] == f"python -m harness run --cell {new}"
    assert cells[0]["backend"] == "tf_grouped_mm_families"  # the input is not changed in place


@pytest.mark.parametrize("schema, needle", [(0, "no longer supported"), (SCHEMA_VERSION + 1, "newer harness")])
def test_schemas_outside_the_readable_range_are_refused_clearly(tmp_path, schema, needle):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"schema": schema, "environment": {}, "cells": []}))
    with pytest.raises(HarnessError) as info:
        read_results(str(path))
    assert needle in str(info.value) and str(path) in str(info.value) and info.value.key == "schema"


def test_the_typed_record_round_trips_and_judges_every_verdict():
    from harness.cells.cell import Cell, Expectation
    from harness.results.record import CellRecord
    from harness.results.verdict import Verdict

    cell = Cell("reference", "grouped_mm", "default", "float16", True, "cpu", "decode")
    outcome = {"status": "mismatch", "error": {"type": "Mismatch", "message": "call 0: too far"},
               "signals": {"repeat_statuses": ["pass", "mismatch"]}}
    record = CellRecord.measured(cell, Expectation("pass"), outcome, 1.25, "python -m harness run --cell x")
    assert record.judgement.verdict is Verdict.FLAKY  # repeats disagree: never a pass, whatever the claim
    assert CellRecord.from_json(record.to_json()).to_json() == record.to_json()
    not_run = CellRecord.not_run(cell, Expectation("pass"), "no CUDA device on this machine", "cmd")
    assert (not_run.status.value, not_run.judgement.verdict) == ("skipped", Verdict.NOT_APPLICABLE)
    steady = CellRecord.measured(cell, Expectation("fail", ("mismatch",)), {**outcome, "signals": {}}, 1.0, "")
    assert steady.judgement.verdict is Verdict.OK


def test_a_record_with_an_unknown_status_is_refused_naming_the_key():
    from harness.results.record import CellRecord

    doc = {"id": "x", "source": "reference", "backend": "eager", "mode": "default", "dtype": "float32",
           "fullgraph": True, "device": "cpu", "shape": "decode", "status": "exploded",
           "expected": {"outcome": "pass"}, "verdict": "ok"}
    with pytest.raises(HarnessError) as info:
        CellRecord.from_json(doc, file="results.json", key="cells[0]")
    assert "cells[0].status" in info.value.render() and "unknown status 'exploded'" in info.value.render()
