"""ResultsWriter: the live results.json is the plain json.dump of the document, cheap to rewrite."""

import json

from harness.results.results_json import ResultsWriter, read_results


def _record(cell_id: str, status: str = "pass") -> dict:
    return {"id": cell_id, "source": "reference", "backend": "eager", "mode": "default", "dtype": "float32",
            "fullgraph": False, "device": "cpu", "shape": "decode", "status": status, "expected": {"outcome": "pass"},
            "verdict": "ok" if status == "pass" else "regression",
            "error": None if status == "pass" else {"type": "RuntimeError", "message": "bad\nsecond line \"q\""},
            "signals": {"calls": [{"tokens": 1, "seconds": 0.5}], "reasons": ["a", {"nested": [1, 2.5, None]}]}}


def test_text_is_the_indented_dump_of_the_document(tmp_path):
    writer = ResultsWriter(str(tmp_path), {"torch": "x"}, {"matrix": "matrix.yaml"})
    writer.write(complete=False)
    empty = (tmp_path / "results.json").read_text()
    assert empty == json.dumps(json.loads(empty), indent=1) + "\n"
    assert json.loads(empty)["cells"] == []
    for cell_id in ("b", "a", "c"):
        writer.add(_record(cell_id, "runtime_error" if cell_id == "c" else "pass"))
    text = (tmp_path / "results.json").read_text()
    doc = json.loads(text)
    assert text == json.dumps(doc, indent=1) + "\n"
    assert [cell["id"] for cell in doc["cells"]] == ["a", "b", "c"]
    assert doc["cells"][2]["error"]["message"] == "bad\nsecond line \"q\""
    assert doc["summary"]["status"]["runtime_error"] == 1 and doc["summary"]["total"] == 3
    assert list(doc)[-1] == "cells"
    read_results(str(tmp_path / "results.json"))


def test_preloaded_records_are_written_with_the_next_cell(tmp_path):
    (tmp_path / "results.json").write_text("earlier run")
    writer = ResultsWriter(str(tmp_path), {}, {})
    writer.add(_record("resumed"), persist=False)
    assert (tmp_path / "results.json").read_text() == "earlier run"  # nothing ran yet: the old file stays
    assert writer.finished == 0
    writer.add(_record("new"))
    doc = json.loads((tmp_path / "results.json").read_text())
    assert [cell["id"] for cell in doc["cells"]] == ["new", "resumed"]
    writer.write(complete=True)
    assert json.loads((tmp_path / "results.json").read_text())["complete"] is True
