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
