"""Shared helpers: write small matrices, run the harness as users do (a subprocess), read its results."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent

TINY_SHAPES = {
    "decode": {"tokens": [1, 3], "hidden": 16, "intermediate": 8, "experts": 4, "top_k": 2, "routing": "uniform"},
    "prefill": {"tokens": [12, 7], "hidden": 16, "intermediate": 8, "experts": 4, "top_k": 2, "routing": "skewed"},
}


def matrix_doc(backends: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A valid matrix document over tiny shapes; keyword arguments replace top-level keys or axes.

    `backends` is flat, `{name: {"source": ..., "impl": ...}}` (see fixture_backend), or already grouped by
    source as matrix.yaml has it (`{"user": {name: impl}, "transformers": [...]}`).
    """
    axes = {"mode": ["uncompiled", "default"], "dtype": ["float32"], "fullgraph": [True, False],
            "device": ["cpu"], "shape": ["prefill"], "layout": ["default"]}
    axes.update(overrides.pop("axes", {}))
    doc = {"schema": 2, "backends": group_backends(backends), "axes": axes, "shapes": copy.deepcopy(TINY_SHAPES),
           "tolerances": {"bfloat16": 3e-2, "float16": 5e-3, "float32": 1e-4}, "time_limit_s": 120,
           "max_recompiles": 1, "expectations": []}
    doc.update(overrides)
    return doc


def group_backends(backends: dict[str, Any]) -> dict[str, Any]:
    """matrix.yaml's `backends` section (grouped by source) from a flat {name: {source, impl}} map."""
    if all(isinstance(entry, dict) and "impl" in entry for entry in backends.values()):
        grouped: dict[str, Any] = {}
        for name, entry in backends.items():
            if entry.get("source") == "transformers":
                grouped.setdefault("transformers", []).append(name)
            else:
                grouped.setdefault(entry.get("source", "user"), {})[name] = entry["impl"]
        return grouped
    return backends


def write_matrix(path: Path, doc: dict[str, Any] | str) -> Path:
    """Write a matrix document (or raw YAML text) to `path`."""
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


def fixture_backend(name: str) -> dict[str, str]:
    """A backends entry for one of tests/fixtures/backends.py."""
    return {"source": "user", "impl": f"tests.fixtures.backends:{name}"}


def run_harness(*args: str, timeout: float = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m harness ...` in a subprocess from the repo root, as a user would run it."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), full_env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env=full_env, check=False)


def load_cells(out_dir: Path) -> dict[str, dict[str, Any]]:
    """results.json cells by id."""
    doc = json.loads((out_dir / "results.json").read_text())
    return {cell["id"]: cell for cell in doc["cells"]}


@pytest.fixture
def tmp_matrix(tmp_path: Path):
    """Factory: write a matrix document into tmp_path and return its path."""

    def make(doc: dict[str, Any] | str, name: str = "matrix.yaml") -> Path:
        return write_matrix(tmp_path / name, doc)

    return make
