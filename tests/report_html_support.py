"""For the HTML report's tests: a small results document with one cell of every legend category, and a DOM."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Callable

from tests.conftest import REPO_ROOT

CLAIMS = str(REPO_ROOT / "reports" / "docs_claims.md")
HOSTILE = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
_VOID = {"meta", "br", "wbr", "img", "input", "link", "hr", "col", "source"}


def record(backend: str, mode: str, dtype: str, fullgraph: bool | None, *, status: str = "pass",
           expect: str = "pass", verdict: str = "ok", error: dict | None = None, device: str = "cpu",
           source: str = "reference", **signals: Any) -> dict[str, Any]:
    """A results cell record with the fields the report reads (ids built from the axes, as the harness does)."""
    fullgraph = None if mode == "uncompiled" else fullgraph
    part = {None: [], True: ["fullgraph"], False: ["breaks-allowed"]}[fullgraph]
    cell_id = "-".join([source, backend, mode, dtype] + part + [device, "decode"])
    reason = {"pass": "default: expected to work", "fail": f"docs: {backend} fails here",
              "observe": f"undocumented: {backend} is observed only"}[expect]
    return {"id": cell_id, "source": source, "backend": backend, "mode": mode, "dtype": dtype,
            "fullgraph": fullgraph, "device": device, "shape": "decode", "layout": "default", "scope": "kernel",
            "phase": "inference", "status": status,
            "expected": {"outcome": expect, "statuses": None, "error_match": None, "reason": reason,
                         "rule_line": None},
            "verdict": verdict, "verdict_reason": f"synthetic {verdict}", "error": error,
            "signals": {"grouped_mm_path": None, "max_rel_error": 1e-6, "compile_s": 1.0, **signals},
            "duration_s": 1.0, "repro": f"python -m harness run --matrix matrix.yaml --cell {cell_id}"}


def cells(*, baseline: bool = False) -> list[dict[str, Any]]:
    """alpha passes (CPU-only in reduce-overhead); beta fails fullgraph as documented and degrades otherwise;
    gamma regresses in mode default (one root cause, numbers vary); delta: unexpected pass, undocumented failure
    (hostile message), flaky. `baseline`: the same before gamma broke and while alpha's fullgraph still failed."""
    out = []
    for dtype in ("bfloat16", "float32"):
        for mode in ("uncompiled", "default", "reduce-overhead"):
            for fullgraph in (True, False):
                if mode == "uncompiled" and fullgraph:
                    continue
                alpha_fails = baseline and mode == "default" and fullgraph and dtype == "bfloat16"
                out.append(record("alpha", mode, dtype, fullgraph, status="compile_error" if alpha_fails else "pass",
                                  error=_error("Unsupported", "alpha once failed") if alpha_fails else None))
                if mode != "uncompiled" and fullgraph:
                    out.append(record("beta", mode, dtype, True, status="compile_error", expect="fail",
                                      error=_error("torch._dynamo.exc.UserError", "data-dependent u0")))
                else:
                    out.append(record("beta", mode, dtype, fullgraph, degraded=["recompiles: 5 > 1"]))
                if mode == "default" and not baseline:
                    size = 12 if dtype == "bfloat16" else 7
                    out.append(record("gamma", mode, dtype, fullgraph, status="runtime_error", verdict="regression",
                                      error=_error("RuntimeError", f"size {size} vs {size + 1} at 0x7f{size}ab",
                                                   where="backends/gamma.py:42 in forward")))
                else:
                    out.append(record("gamma", mode, dtype, fullgraph))
    out.append(record("delta", "reduce-overhead", "bfloat16", False, expect="fail", verdict="unexpected_pass"))
    out.append(record("delta", "default", "float32", True, status="mismatch", expect="observe",
                      error=_error("Mismatch", HOSTILE)))
    out.append(record("delta", "uncompiled", "float32", None, status="crash", verdict="flaky",
                      error=_error("Crash", "signal 11"), repeat_statuses=["pass", "crash"]))
    out.append(record("alpha", "default", "bfloat16", True, device="cuda", status="skipped",
                      verdict="not_applicable", error=_error("NotApplicable", "no CUDA device on this machine")))
    return out


def _error(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "phase": "call 0", **extra}


def write_results(path: Path, cell_records: list[dict[str, Any]]) -> str:
    """A results.json (schema 1) of a CPU machine around the records; its path."""
    env = {"torch": "2.13.0+cpu", "transformers": "5.17.0", "cuda_available": False, "device_name": "cpu",
           "compute_capability": None}
    path.write_text(json.dumps({"schema": 1, "complete": True, "interrupted": False, "environment": env,
                                "cells": cell_records}))
    return str(path)


def page(tmp_path: Path, *, baseline: bool = True, records: list[dict[str, Any]] | None = None) -> str:
    """The HTML report of `cells()` (or `records`), compared with the baseline variant when `baseline`."""
    from harness.report.render import render

    results = write_results(tmp_path / "results.json", records if records is not None else cells())
    base = write_results(tmp_path / "baseline.json", cells(baseline=True)) if baseline else None
    return render([results], "html", None, CLAIMS, "python -m harness report", baseline=base)


@dataclass
class Node:
    """An element: tag, attributes, children (elements and text)."""

    tag: str
    attrs: dict[str, str | None]
    children: list[Any] = field(default_factory=list)
    parent: Node | None = None

    @property
    def classes(self) -> set[str]:
        """The class attribute as a set."""
        return set((self.attrs.get("class") or "").split())

    def text(self) -> str:
        """All text inside, concatenated."""
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def find_all(self, match: Callable[[Node], bool]) -> list[Node]:
        """Every element below (document order) that `match` accepts."""
        out = []
        for child in self.children:
            if isinstance(child, Node):
                if match(child):
                    out.append(child)
                out += child.find_all(match)
        return out

    def by_id(self, element_id: str) -> Node:
        """The element with this id (exactly one)."""
        (found,) = self.find_all(lambda n: n.attrs.get("id") == element_id)
        return found


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.current = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), parent=self.current)
        self.current.children.append(node)
        if tag not in _VOID:
            self.current = node

    def handle_endtag(self, tag):
        node = self.current
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse(text: str) -> Node:
    """The document's element tree (standard library parser)."""
    builder = _Builder()
    builder.feed(text)
    builder.close()
    return builder.root
