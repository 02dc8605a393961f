"""A standalone script that reruns one cell with only torch installed: what a bug report needs.

Reference backends are inlined from backends/*.py (only the functions the cell's backend needs, plus the
grouped_mm dispatcher and its custom op when it uses them); the test module, the float64 oracle and the input
generator are inlined too, so the script builds the same weights and inputs as the harness. A user backend is
imported by its dotted path (it is the user's code).
"""

from __future__ import annotations

import ast
import inspect
import json
import pprint
from typing import Any

from harness.cells import Cell, cell_spec
from harness.errors import HarnessError
from harness.matrix import Matrix

_REFERENCE_MODULE = "backends.reference"


def script(matrix: Matrix, cell: Cell, observed: dict[str, Any] | None = None, env_label: str | None = None) -> str:
    """The text of the standalone reproduction script of `cell`."""
    if cell.scope != "kernel" or cell.phase != "inference":
        raise HarnessError(f"repro scripts cover kernel-scope inference cells; {cell.id} is {cell.scope}/"
                           f"{cell.phase}: rerun it with its harness command", key="CELL_ID")
    if cell.source == "transformers":
        raise HarnessError(f"{cell.id}: repro scripts of transformers-source cells are not written yet; rerun it "
                           f"with its harness command", key="CELL_ID")
    spec = cell_spec(matrix, cell)
    module_name, _, function = spec["impl"].partition(":")
    # Postponed annotations: the inlined code keeps its type hints without importing `typing` names.
    parts = [_header(cell, spec, matrix, observed, env_label), "from __future__ import annotations", "",
             "import sys", "import types", "", "import torch", ""]
    if module_name == _REFERENCE_MODULE:
        parts += _reference_code(function)
        parts.append(f"REFERENCE_BACKENDS = {{{json.dumps(cell.backend)}: {function}}}")
    else:
        parts.append(f"from {module_name} import {function}  # the backend under test (your code)")
        parts.append("REFERENCE_BACKENDS = {}")
    parts += ["", _section("backends/experts.py: the test experts module"), _file_source("backends.experts"),
              _section("backends/oracle.py: the float64 oracle"), _file_source("backends.oracle"),
              _section("harness/cell_run.py: inputs and comparison, as the harness does them"),
              _function_source("harness.cell_run", "_inputs"), "", _function_source("harness.cell_run", "_compare"),
              "", _main(spec, function)]
    return "\n".join(parts).rstrip("\n") + "\n"


def _header(cell: Cell, spec, matrix: Matrix, observed, env_label) -> str:
    lines = [f"Standalone reproduction of compile-matrix cell {cell.id}.", ""]
    if observed:
        error = observed.get("error") or {}
        what = observed["status"] + (f": {error.get('type')}: {error.get('message')}" if error else "")
        lines.append(f"Observed: {what}")
        if env_label:
            lines.append(f"      on: {env_label}")
    lines += [f"Backend: {spec['impl']} ({cell.source}); mode={cell.mode}, dtype={cell.dtype}, "
              f"fullgraph={cell.fullgraph}, device={cell.device}, shape={cell.shape} {spec['shape']}, "
              f"layout={cell.layout}.",
              f"Harness command: python -m harness run --matrix {matrix.path} --cell {cell.id}",
              "",
              "Needs only torch" + ("" if spec["impl"].startswith(_REFERENCE_MODULE + ":") else
                                    " and the backend's own package") + "; run it as `python THIS_FILE`.",
              "Exit status: 1 (with the traceback) when the failure reproduces, 0 when every call passes."]
    body = "\n".join(lines).replace('"""', "'''")
    return f'"""{body}\n"""'


def _main(spec: dict[str, Any], function: str) -> str:
    cell = spec["cell"]
    mode = None if cell["mode"] == "default" else cell["mode"]
    return f'''SPEC = {pprint.pformat(spec, width=110, sort_dicts=False)}


def main() -> int:
    """Build the cell's module, compile the backend as the cell does, call it once per token count."""
    cell, shape = SPEC["cell"], SPEC["shape"]
    device, dtype = torch.device(cell["device"]), getattr(torch, cell["dtype"])
    print(f"torch {{torch.__version__}}, device {{device}}, cell {{cell}}")
    torch.manual_seed(SPEC["seed"])
    module = make_experts(shape["experts"], shape["hidden"], shape["intermediate"], layout=cell["layout"],
                          dtype=dtype, device=device, seed=SPEC["seed"])
    subject = types.SimpleNamespace(module=module, dense_routing=cell["layout"] in DENSE_ROUTING_LAYOUTS)

    def forward(hidden_states, top_k_index, top_k_weights):
        return {function}(module, hidden_states, top_k_index, top_k_weights)

    compiled = {"forward" if cell["mode"] == "uncompiled" else
                f"torch.compile(forward, mode={mode!r}, fullgraph={bool(cell['fullgraph'])})"}
    with torch.no_grad():  # inference cells run as generate() does
        for call, tokens in enumerate(shape["tokens"]):
            args = _inputs(SPEC, subject, tokens, device, dtype, call)
            out = compiled(*args)  # a compile or runtime failure raises here, with its traceback
            problem, rel = _compare(out, oracle_forward(module, *args), tokens, shape["hidden"], dtype)
            if problem:
                raise AssertionError(f"call {{call}} ({{tokens}} tokens): {{problem}}")
            print(f"call {{call}} ({{tokens}} tokens): max relative error {{rel:.3g}} "
                  f"(tolerance {{SPEC['tolerance']:g}})")
            if rel > SPEC["tolerance"]:
                raise AssertionError(f"call {{call}} ({{tokens}} tokens): max relative error {{rel:.3g}} > "
                                     f"tolerance {{SPEC['tolerance']:g}}")
    print("did not reproduce: every call passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def _section(title: str) -> str:
    return f"# {'-' * 4} inlined from {title} {'-' * max(4, 100 - len(title))}"


def _reference_code(function: str) -> list[str]:
    """The reference backend `function` and the module-level code it needs (the grouped_mm dispatcher if used)."""
    import backends.reference as reference

    tree, lines = _parse(reference)
    defs = {_name(node): node for node in tree.body if _name(node)}
    if function not in defs:
        raise HarnessError(f"{_REFERENCE_MODULE} has no function {function!r}", key="impl")
    needed, todo = [], [function]
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.append(name)
        todo += [ref for ref in _names_used(defs[name]) if ref in defs and ref not in needed]
    out = []
    uses_grouped = any("grouped_mm" in _names_used(defs[name]) for name in needed)
    if uses_grouped:
        out += [_section("backends/grouped.py: grouped_mm dispatcher and fallback custom op"),
                _file_source("backends.grouped")]
    out.append(_section(f"backends/reference.py: {function} and its helpers"))
    out += [_imports(tree, lines)]
    for node in tree.body:  # file order, so helpers come before their users as in the original
        if _name(node) in needed:
            out += ["", "", _segment(node, lines)]
    return out + [""]


def _file_source(module_name: str) -> str:
    """A whole module's source without its docstring and its package-relative imports."""
    import importlib

    module = importlib.import_module(module_name)
    tree, lines = _parse(module)
    keep = []
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant) \
                and node is tree.body[0]:
            continue  # the module docstring
        if isinstance(node, ast.ImportFrom) and node.level:
            continue  # the inlined code defines these names itself
        keep.append(_segment(node, lines, with_comments=True))
    return "\n\n".join(keep) + "\n"


def _function_source(module_name: str, function: str) -> str:
    import importlib

    return inspect.getsource(getattr(importlib.import_module(module_name), function)).rstrip("\n")


def _parse(module) -> tuple[ast.Module, list[str]]:
    source = inspect.getsource(module)
    return ast.parse(source), source.splitlines()


def _imports(tree: ast.Module, lines: list[str]) -> str:
    return "\n".join(_segment(node, lines) for node in tree.body
                     if isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0))


def _name(node: ast.AST) -> str | None:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return node.name
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    return None


def _names_used(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _segment(node: ast.AST, lines: list[str], with_comments: bool = False) -> str:
    start = min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno])
    if with_comments:  # keep the comment lines right above a statement: they say why
        while start > 1 and lines[start - 2].lstrip().startswith("#"):
            start -= 1
    return "\n".join(lines[start - 1:node.end_lineno])
