"""The layout of harness/: the import-linter contracts of pyproject.toml hold, and they catch a broken layering;
private helpers stay inside their package; every module can be read in one sitting."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 400


def _lint(root: Path) -> subprocess.CompletedProcess:
    """import-linter over the harness and backends packages found in `root`, with root's pyproject.toml."""
    if shutil.which("lint-imports") is None and not _importable("importlinter"):
        if os.environ.get("CI"):
            pytest.fail("import-linter is not installed (the nox session `tests` installs it)")
        pytest.skip("import-linter is not installed (pip install import-linter)")
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def test_import_contracts_hold():
    proc = _lint(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize("module, line, broken", [
    # A report importing the runner breaks the layers.
    ("harness/report/docs_table.py", "import harness.running.plugin  # noqa: F401",
     "harness follows the pipeline"),
    # A cycle between two modules of one package.
    ("harness/measure/steps.py", "import harness.measure.cell_run  # noqa: F401",
     "no import cycles"),
])
def test_contracts_catch_a_broken_layout(tmp_path, module, line, broken):
    for part in ("harness", "backends"):
        shutil.copytree(REPO / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text(encoding="utf-8") + "\n" + line + "\n", encoding="utf-8")
    proc = _lint(tmp_path)
    assert proc.returncode != 0
    assert f"{broken}" in proc.stdout and "BROKEN" in proc.stdout


def _modules():
    return sorted(p for p in (REPO / "harness").rglob("*.py") if "__pycache__" not in p.parts)


def _package(path: Path) -> str:
    return ".".join(path.relative_to(REPO).parent.parts)


def test_private_names_stay_in_their_package():
    crossing = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness."):
                home = node.module.rpartition(".")[0]
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    if private and home != _package(path):
                        crossing.append(f"{path.relative_to(REPO)}: {node.module}.{alias.name}")
    assert not crossing, "private names imported from another package:\n" + "\n".join(crossing)


def test_every_module_reads_in_one_sitting():
    long = [f"{p.relative_to(REPO)}: {n} lines" for p in _modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES]
    assert not long, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(long)


def test_every_package_and_module_says_what_it_is():
    missing = [str(p.relative_to(REPO)) for p in _modules()
               if not ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))]
    assert not missing, "modules without a docstring:\n" + "\n".join(missing)


def test_tests_use_public_names_and_reach_the_cli_through_its_entry_point():
    """Tests import what a user or another package may: no private name of harness/, no `harness.cli.cmd_*` module
    (the CLI is `harness.cli.main` or `python -m harness`), so moving a command's internals breaks no test."""
    found = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
                modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                modules, names = [alias.name for alias in node.names if alias.name.startswith("harness")], []
            else:
                continue
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            found += [f"{where}: {m}" for m in modules if m.startswith("harness.cli.cmd_")]
            found += [f"{where}: {n}" for n in names if n.startswith("_") and not n.startswith("__")]
    assert not found, "tests importing CLI internals or private names:\n" + "\n".join(found)
