"""The reviewer's HTML page, read as a DOM (html.parser): counts, then what failed the gate, then the grid."""

from __future__ import annotations

import shlex

from harness.report.html.page import SECTIONS
from harness.report.html.cells import CATEGORIES, cause_key, normalise, rerun_command
from harness.report.html.select import keyword_expression, matches
from tests.report_html_support import HOSTILE, cells, page, parse, record


def _sections(root):
    return [n.attrs["id"] for n in root.find_all(lambda n: n.tag == "section")]


def _counts(root, row_label):
    table = root.by_id("counts").find_all(lambda n: n.tag == "table")[0]
    row = next(tr for tr in table.find_all(lambda n: n.tag == "tr")
               if tr.children and tr.find_all(lambda n: n.tag == "th") and
               tr.find_all(lambda n: n.tag == "th")[0].text() == row_label)
    return {td.attrs["data-count"]: int(td.text()) for td in row.find_all(lambda n: n.tag == "td")}


def test_the_page_opens_with_counts_then_the_gate_then_the_grid(tmp_path):
    root = parse(page(tmp_path))
    assert _sections(root)[:3] == ["counts", "gate", "cells"] and _sections(root) == list(SECTIONS)
    body = root.find_all(lambda n: n.tag == "body")[0]
    first = [n for n in body.children if not isinstance(n, str)]
    assert first[0].tag == "h1" and root.by_id("headline").text().startswith("Gate FAILED")
    total = _counts(root, "torch 2.13.0 / tf 5.17.0 / cpu")
    assert (total["cells"], total["pass"], total["failed"], total["degraded"]) == (33, 23, 10, 6)
    assert (total["compile_error"], total["runtime_error"], total["mismatch"], total["crash"]) == (4, 4, 1, 1)
    assert (total["ok"], total["regression"], total["unexpected_pass"], total["flaky"]) == (27, 4, 1, 1)
    assert _counts(root, "all")["not run"] == 1  # the cuda cell this CPU machine skipped


def test_gate_failures_are_grouped_by_root_cause_with_ids_and_a_rerun_command(tmp_path):
    root = parse(page(tmp_path))
    gate = root.by_id("gate")
    blocks = gate.find_all(lambda n: n.tag == "div" and "cause" in n.classes)
    docs = [b for b in blocks if "data-cat" in b.attrs]
    assert [b.attrs["data-cat"] for b in docs] == ["regression", "unexpected_pass", "flaky"]
    regression = docs[0]
    text = " ".join(regression.text().split())
    assert "4 cells" in text and "runtime_error" in text and "RuntimeError" in text
    assert "backends/gamma.py:42 in forward" in text and "(numbers vary)" in text  # the `where` field, shown
    ids = [a.text() for a in regression.find_all(lambda n: n.tag == "a")]
    assert len(ids) == 4 and all("-gamma-default-" in i for i in ids)
    assert regression.find_all(lambda n: n.tag == "details")  # the ids fold away
    command = regression.find_all(lambda n: n.tag == "div" and "cmd" in n.classes)[0].text()
    words = shlex.split(command.split(":", 1)[1])
    assert words[:4] == ["python", "-m", "harness", "run"]
    every = {c["id"] for c in cells() if c["status"] != "skipped"}
    expression = words[words.index("-k") + 1]
    assert {i for i in every if matches(expression, i)} == set(ids)  # selects exactly the group
    kinds = [b.attrs["data-kind"] for b in blocks if "data-kind" in b.attrs]
    assert kinds == ["new_failure", "fixed"]  # against the baseline, in report order
    assert "update-baseline" in blocks[-1].text()  # how to accept the fix


def test_grid_has_no_empty_column_and_only_axes_that_vary(tmp_path):
    root = parse(page(tmp_path))
    grid = root.by_id("grid")
    leaves = grid.find_all(lambda n: n.tag == "th" and "leaf" in n.classes)
    cols = {leaf.attrs["data-col"] for leaf in leaves}
    filled = {td.attrs["data-col"] for td in grid.find_all(lambda n: n.tag == "td" and "c" in n.classes)}
    assert cols == filled and len(leaves) == 6  # modes (uncompiled, None, reduce-overhead) x 2 dtypes
    names = [th.text() for th in grid.find_all(lambda n: n.tag == "th" and "rh" in n.classes)]
    assert names == ["backend", "fullgraph"]  # source, layout, scope, phase, env, shape: one value each
    assert all(not td.attrs.get("data-col") is None for td in grid.find_all(lambda n: n.tag == "td"))
    head = grid.find_all(lambda n: n.tag == "thead")[0]
    assert head.attrs == {} and "position:sticky" in page(tmp_path).replace(" ", "")  # sticky header rows
    cells_shown = grid.find_all(lambda n: n.tag == "td" and "c" in n.classes)
    assert len(cells_shown) == 33 and {td.attrs["data-category"] for td in cells_shown} >= {
        "regression", "unexpected_pass", "flaky", "documented", "undocumented", "not_claimed", "degraded", "ok"}


def test_filters_and_legend_are_all_there(tmp_path):
    root = parse(page(tmp_path))
    axes = [s.attrs["data-axis"] for s in root.by_id("filters").find_all(lambda n: n.tag == "select")]
    assert axes == ["backend", "mode", "fullgraph", "dtype", "status", "category"]  # no source/device: one value
    status = next(s for s in root.by_id("filters").find_all(lambda n: n.tag == "select")
                  if s.attrs["data-axis"] == "status")
    assert [o.attrs["value"] for o in status.find_all(lambda n: n.tag == "option")] == [
        "", "compile_error", "crash", "mismatch", "pass", "runtime_error"]
    legend = root.by_id("legend").find_all(lambda n: n.tag == "button")
    assert [b.attrs["data-category"] for b in legend] == [c.name for c in CATEGORIES]
    labels = " ".join(b.text() for b in legend)
    for words in ("fails as documented", "undocumented behaviour", "CPU-only, not claimed", "regression"):
        assert words in labels
    scripts = root.find_all(lambda n: n.tag == "script")
    assert len(scripts) == 1 and "src" not in scripts[0].attrs  # inline, nothing fetched


def test_source_and_device_filters_appear_when_they_vary(tmp_path):
    more = cells() + [record("alpha", "default", "bfloat16", True, source="user"),
                      record("alpha", "default", "bfloat16", True, device="cuda")]
    root = parse(page(tmp_path, baseline=False, records=more))
    axes = [s.attrs["data-axis"] for s in root.by_id("filters").find_all(lambda n: n.tag == "select")]
    assert {"source", "device", "env"} <= set(axes)
    assert "Not compared" in root.by_id("gate").text()


def test_everything_from_the_results_is_escaped_and_nothing_is_fetched(tmp_path):
    text = page(tmp_path)
    assert text.count("<script") == 1 and "<img" not in text and "&lt;script&gt;alert" in text
    root = parse(text)
    assert not root.find_all(lambda n: n.tag in ("img", "link", "iframe", "object") or "src" in n.attrs)
    assert all(a.attrs["href"].startswith("#") for a in root.find_all(lambda n: "href" in n.attrs))


def test_root_causes_ignore_numbers_and_ids_and_reruns_fall_back_to_cell_ids():
    assert normalise("size 12 vs 13 at 0x7f12ab") == normalise("size 7 vs 8 at 0x7f7ab") == "size N vs N at <hex>"
    assert normalise("float16 on sm90") == "float16 on sm90"  # numbers inside words are names
    gamma = [c for c in cells() if c["verdict"] == "regression"]
    beta = [c for c in cells() if c["backend"] == "beta" and c["status"] != "pass"]
    assert len({cause_key(c) for c in gamma}) == 1 and cause_key(gamma[0]) != cause_key(beta[0])
    one = record("gamma", "default", "float32", True)
    assert rerun_command([one]) == f"python -m harness run --cell {one['id']}"  # run's default matrix
    mine = dict(one, repro=f"python -m harness run --matrix my/m.yaml --cell {one['id']}")
    assert rerun_command([mine]) == f"python -m harness run --matrix my/m.yaml --cell {one['id']}"
    far = dict(one, repro=f"python -m harness run --matrix /abs/where/matrix.yaml --cell {one['id']}")
    assert rerun_command([far]) == f"python -m harness run --cell {one['id']}"  # the repository's own matrix
    known = {"ref-eager-default-fp32", "ref-eager-default-bf16", "tf-eager-default-fp32", "ref-mm-max-fp32"}
    expression = keyword_expression(["ref-eager-default-fp32", "tf-eager-default-fp32"], known)
    assert {i for i in known if matches(expression, i)} == {"ref-eager-default-fp32", "tf-eager-default-fp32"}
    assert all(any(not w.startswith("not ") for w in clause.split(" and ")) for clause in expression.split(" or "))
    assert keyword_expression(["ab-cd"], {"ab-cd-ef"}, terms=1) is None  # one word cannot tell them apart


def test_hostile_text_is_in_the_page_only_escaped(tmp_path):
    root = parse(page(tmp_path))
    known = root.by_id("known").text()
    assert HOSTILE in known  # shown as text, after the parser decoded the entities
