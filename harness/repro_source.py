"""Source inlining for repro scripts: this repository's code copied into a script that imports none of it.

The script must run with only torch (and transformers) installed, so every function or module of
harness/, backends/ or tests/ it needs is pasted in as it is written here: a fix here shows up in the
next script. Imports of those packages (and package-relative imports, and `__future__`) are dropped; a
`Script` then makes sure the names they brought are defined, inlining the module they came from when the
script does not define them itself.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap

from harness.errors import HarnessError

LOCAL_PACKAGES = ("harness", "backends", "tests")  # what a standalone script may not import
_REFERENCE_MODULE = "backends.reference"


def section(title: str) -> str:
    """A comment line that says where the following inlined code comes from."""
    return f"# {'-' * 4} inlined from {title} {'-' * max(4, 100 - len(title))}"


class Script:
    """The code of one script, part by part: each inlined module once, every name a dropped import brought defined."""

    def __init__(self):
        self.parts: list[str] = []
        self._defined: set[str] = set()
        self._modules: set[str] = set()

    def add(self, *texts: str) -> None:
        """Append code written for the script; its top-level names count as defined."""
        for text in texts:
            self.parts.append(text)
            try:
                self._defined |= _top_level_names(ast.parse(text))
            except SyntaxError:
                pass  # comments, or an f-string template's fragment: nothing to record

    def module(self, module_name: str, what: str) -> None:
        """Inline a whole module (once), after the local modules whose names it imports and the script lacks."""
        if module_name in self._modules:
            return
        self._modules.add(module_name)
        module = importlib.import_module(module_name)
        tree, lines = _parse(module)
        self._dependencies(tree.body, module_name)
        code, end = "", None
        for node in tree.body:
            if isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant) \
                    and node is tree.body[0]:
                continue  # the module docstring
            if _dropped_import(node):
                continue  # the script defines these names itself
            start, text = _start(node, lines, with_comments=True), _segment(node, lines, with_comments=True)
            gap = 0 if end is None else 1 + min(2, start - end - 1)  # the original's blank lines, at most two
            code, end = code + "\n" * gap + text, node.end_lineno
        self.add(section(f"{_path(module)}: {what}"), code + "\n")

    def function(self, module_name: str, name: str) -> None:
        """Inline one function (or class) without the local imports in its body; their names get defined too."""
        module = importlib.import_module(module_name)
        source = inspect.getsource(getattr(module, name))
        lines = source.splitlines()
        tree = ast.parse(textwrap.dedent(source))
        drop = set()
        imports = []
        for node in ast.walk(tree):
            if _dropped_import(node):
                imports.append(node)
                drop.update(range(node.lineno - 1, node.end_lineno))
                if node.end_lineno < len(lines) and not lines[node.end_lineno].strip():
                    drop.add(node.end_lineno)  # and the blank line that set it apart
        self._dependencies(imports, module_name)
        self.add("\n".join(line for number, line in enumerate(lines) if number not in drop).rstrip("\n"), "", "")

    def reference(self, function: str) -> None:
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
        used = set().union(*(_names_used(defs[name]) for name in needed))
        self._dependencies([node for node in tree.body if _dropped_import(node)], _REFERENCE_MODULE, used)
        code = ["\n".join(_segment(node, lines) for node in tree.body
                          if isinstance(node, (ast.Import, ast.ImportFrom)) and not _dropped_import(node))]
        # File order, so helpers come before their users as in the original.
        code += [_segment(node, lines) for node in tree.body if _name(node) in needed]
        self.add(section(f"backends/reference.py: {function} and its helpers"), "\n\n\n".join(code), "")

    def text(self) -> str:
        """The script's code so far."""
        return "\n".join(self.parts)

    def _dependencies(self, imports: list[ast.AST], module_name: str, used: set[str] | None = None) -> None:
        """Inline the local modules that dropped `imports` name, where the script lacks a name it needs."""
        for node in imports:
            if not isinstance(node, ast.ImportFrom) or node.module == "__future__":
                continue
            source = _absolute(node, module_name)
            names = [alias.asname or alias.name for alias in node.names]
            if all(name in self._defined for name in names if used is None or name in used):
                continue
            if source.split(".")[0] not in LOCAL_PACKAGES:
                continue
            self.module(source, f"imported by {module_name}")
            lacking = [name for name in names if name not in self._defined and (used is None or name in used)]
            if lacking:
                raise HarnessError(f"repro: {module_name} imports {', '.join(lacking)} from {source}, which the "
                                   f"script cannot define (a module, not a name?)", key="CELL_ID")


def _dropped_import(node: ast.AST) -> bool:
    """An import the script must not keep: `__future__` (the script has its own), relative, or of a local package."""
    if isinstance(node, ast.ImportFrom):
        return bool(node.level) or (node.module or "").split(".")[0] in LOCAL_PACKAGES + ("__future__",)
    if isinstance(node, ast.Import):
        return any(alias.name.split(".")[0] in LOCAL_PACKAGES for alias in node.names)
    return False


def _absolute(node: ast.ImportFrom, module_name: str) -> str:
    """The absolute module name of a (possibly relative) `from X import ...` inside `module_name`."""
    if not node.level:
        return node.module or ""
    package = module_name.rsplit(".", node.level)[0]
    return f"{package}.{node.module}" if node.module else package


def _top_level_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return names


def _path(module) -> str:
    return module.__name__.replace(".", "/") + ".py"


def _parse(module) -> tuple[ast.Module, list[str]]:
    source = inspect.getsource(module)
    return ast.parse(source), source.splitlines()


def _name(node: ast.AST) -> str | None:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return node.name
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    return None


def _names_used(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _start(node: ast.AST, lines: list[str], with_comments: bool = False) -> int:
    start = min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno])
    if with_comments:  # keep the comment lines right above a statement: they say why
        while start > 1 and lines[start - 2].lstrip().startswith("#"):
            start -= 1
    return start


def _segment(node: ast.AST, lines: list[str], with_comments: bool = False) -> str:
    return "\n".join(lines[_start(node, lines, with_comments) - 1:node.end_lineno])
