"""reports/CI.md's copy list: complete for the workflow, the harness's default paths and its own tests."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import yaml

from harness.cli.main import build_parser
from tests.conftest import REPO_ROOT

CI = REPO_ROOT / "reports" / "CI.md"


def _copy_list() -> list[str]:
    text = CI.read_text()
    block = text.split("<!-- copy-list:begin -->")[1].split("<!-- copy-list:end -->")[0]
    paths = []
    for line in block.splitlines():
        if line.startswith("| `"):
            paths += re.findall(r"`([^`]+)`", line.split("|")[1])
    return paths


def _covered(path: str, listed: list[str]) -> bool:
    path = path.rstrip("/")
    return any(path == item.rstrip("/") or (item.endswith("/") and path.startswith(item)) for item in listed)


def _needed() -> set[str]:
    """Repository paths that the workflow, the CLI's default inputs, the package metadata and the tests read."""
    needed = {".github/workflows/compile-matrix.yml", "noxfile.py", "pyproject.toml"}
    workflow = (REPO_ROOT / ".github" / "workflows" / "compile-matrix.yml").read_text()
    for token in re.findall(r"[\w.\-/*]+", workflow):
        candidate = token.strip("'\"").rstrip("*").rstrip("/")
        if candidate and "/" in candidate or candidate.endswith((".yaml", ".md", ".py")):
            if (REPO_ROOT / candidate).exists() and not candidate.startswith(("out", "merged", "artifacts")):
                needed.add(candidate)
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    needed.add(re.search(r'^readme = "([^"]+)"', pyproject, re.M).group(1))
    needed.update(re.search(r"^packages = \[(.*)\]", pyproject, re.M).group(1).replace('"', "").replace(" ", "")
                  .split(","))
    parser = build_parser()
    commands = next(action for action in parser._actions if action.dest == "command").choices
    for command in commands.values():
        for action in command._actions:
            if action.dest in ("matrix", "baselines", "claims") and isinstance(action.default, str):
                needed.add(os.path.relpath(action.default, REPO_ROOT))
    for test in (REPO_ROOT / "tests").glob("*.py"):
        text = test.read_text()
        for parts in re.findall(r'REPO_ROOT((?:\s*/\s*"[^"]+")+)', text):
            needed.add("/".join(re.findall(r'"([^"]+)"', parts)))
        needed.update(path for path in re.findall(r'"((?:reports|backends|harness)/[\w./\-]+)"', text))
    needed.add("tests")
    outputs = ("reports/latest",)  # written by runs, read by nothing
    return {path for path in needed if (REPO_ROOT / path).exists() and not path.startswith(outputs)}


def test_the_copy_list_covers_everything_that_is_read():
    listed = _copy_list()
    assert listed and all((REPO_ROOT / path).exists() for path in listed), listed
    missing = sorted(path for path in _needed() if not _covered(path, listed))
    assert missing == [], f"add to the copy list in {CI}: {missing}"
    workflow = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "compile-matrix.yml").read_text())
    assert workflow["jobs"]


def test_the_workflow_commands_that_need_no_torch_work_in_a_copy(tmp_path):
    """The report job's merge and the docs-drift step, run in a folder holding only the listed paths."""
    copy = tmp_path / "repo"
    for path in _copy_list():
        source, target = REPO_ROOT / path, copy / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, target)
    from harness.environment import machine as environment
    from harness.results.results_json import SCHEMA_VERSION

    cell = {"id": "reference-eager-uncompiled-float32-cpu-decode", "source": "reference", "backend": "eager",
            "mode": "uncompiled", "dtype": "float32", "fullgraph": None, "device": "cpu", "shape": "decode",
            "status": "pass", "expected": {"outcome": "pass"}, "verdict": "ok", "error": None, "signals": {}}
    results = tmp_path / "artifacts" / "results-cpu-1" / "results.json"
    results.parent.mkdir(parents=True)
    results.write_text(json.dumps({"schema": SCHEMA_VERSION, "environment": environment.collect(("cpu",)),
                                   "cells": [cell]}))
    env = {**os.environ, "PYTHONPATH": str(copy)}
    for args in (["merge", str(results), "--out", "merged", "--baseline", "auto"],
                 ["docs", "--check", "reports/support_table.md"]):
        proc = subprocess.run([sys.executable, "-m", "harness", *args], cwd=copy, env=env, capture_output=True,
                              text=True, timeout=300, check=False)
        assert proc.returncode in (0, 1) and "error:" not in proc.stderr, (args, proc.stdout[-2000:], proc.stderr)
    assert (copy / "merged" / "report.html").exists()
