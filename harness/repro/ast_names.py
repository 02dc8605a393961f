"""Names in the AST for source inlining: what imports bind, free names, annotations, and small rewrites."""

from __future__ import annotations

import ast
import builtins
import importlib
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.repro.source import _Module
    from harness.repro.specialise import Specialiser

LOCAL_PACKAGES = ("harness", "backends", "tests")  # what a standalone script may not import

_BUILTINS = set(dir(builtins))


_NOQA = re.compile(r"\s+# noqa\b.*$")


def _hoisted_imports(specialiser: Specialiser, module_name: str) -> dict[str, tuple[str, str | None]]:
    """What the imports inside the specialised function bodies bind (they moved to the import block)."""
    found: dict[str, tuple[str, str | None]] = {}
    for node in specialiser.hoisted:
        found.update(_bindings(node, module_name))
    return found


def _bindings(node: ast.Import | ast.ImportFrom, module_name: str) -> dict[str, tuple[str, str | None]]:
    """bound name -> (absolute module, imported name or None when the module itself is bound)."""
    found: dict[str, tuple[str, str | None]] = {}
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname:
                found[alias.asname] = (alias.name, None)
            else:
                found[alias.name.split(".")[0]] = (alias.name.split(".")[0], None)
        return found
    source = node.module or ""
    if node.level:
        package = module_name.rsplit(".", node.level)[0]
        source = f"{package}.{source}" if node.module else package
    for alias in node.names:
        bound = alias.asname or alias.name
        is_module = False
        if source.split(".")[0] in LOCAL_PACKAGES:  # `from harness import tf_dispatch`: a module, not a name
            try:
                importlib.import_module(f"{source}.{alias.name}")
                is_module = True
            except ImportError:
                pass
        found[bound] = (f"{source}.{alias.name}", None) if is_module else (source, alias.name)
    return found


def _unalias_modules(node: ast.stmt, module: _Module) -> ast.stmt:
    """`tf_dispatch.spy` -> `spy` where `tf_dispatch` is a local module the script inlines from."""
    bindings = dict(module.imports)
    for inner in ast.walk(node):
        if isinstance(inner, (ast.Import, ast.ImportFrom)):
            bindings.update(_bindings(inner, module.name))
    aliases = {bound: source for bound, (source, imported) in bindings.items()
               if imported is None and source.split(".")[0] in LOCAL_PACKAGES}
    if not aliases or not any(isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                              and n.value.id in aliases for n in ast.walk(node)):
        return node

    class _Rewrite(ast.NodeTransformer):
        def visit_Attribute(self, attr):
            if isinstance(attr.value, ast.Name) and attr.value.id in aliases:
                target = aliases[attr.value.id]
                module.imports.setdefault(attr.attr, (target, attr.attr))
                return ast.copy_location(ast.Name(id=attr.attr, ctx=attr.ctx), attr)
            return self.generic_visit(attr)

    import copy

    new = copy.deepcopy(node)
    pairs = list(zip(ast.walk(node), ast.walk(new)))
    new = _Rewrite().visit(new)
    for original, copied in pairs:  # a statement that changed has no source text to copy any more
        if isinstance(copied, ast.stmt) and ast.dump(original) != ast.dump(copied) and hasattr(copied, "_src"):
            del copied._src
    return new


def _tag(tree: ast.AST, lines: list[str]) -> None:
    for node in ast.walk(tree):
        node._src = lines


def _def_name(node: ast.stmt) -> str | None:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return node.name
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if len(targets) == 1 and isinstance(targets[0], ast.Name):
            return targets[0].id
    return None


def _free_names(node: ast.stmt) -> list[str]:
    """Names `node` reads and does not bind itself (annotations left out: the script postpones them)."""
    if isinstance(node, ast.ClassDef):
        return _class_free_names(node)
    bound: set[str] = set()
    loads: list[str] = []
    methods = {id(m) for c in ast.walk(node) if isinstance(c, ast.ClassDef) for m in c.body}  # not in scope

    def walk(n: ast.AST, skip_annotations: bool = True):
        for child in ast.iter_child_nodes(n):
            if skip_annotations and isinstance(n, (ast.arg,)) and child is n.annotation:
                continue
            if skip_annotations and isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and child is n.returns:
                continue
            if skip_annotations and isinstance(n, ast.AnnAssign) and child is n.annotation:
                continue
            walk(child)
        if isinstance(n, ast.Name):
            (loads.append(n.id) if isinstance(n.ctx, ast.Load) else bound.add(n.id))
        elif isinstance(n, ast.arg):
            bound.add(n.arg)
        elif isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n is not node and id(n) not in methods:
            bound.add(n.name)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            bound.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in n.names)

    walk(node)
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        bound.discard(node.name)
    seen, out = set(), []
    for name in loads:
        if name not in bound and name not in seen:
            seen.add(name)
            out.append(name)
    return out


def _class_free_names(node: ast.ClassDef) -> list[str]:
    """A class's free names, scope by scope: each method sees the module, not the names the class body or its other
    methods bind (a method's local `counters` must not hide the `counters` another method imports)."""
    names: list[str] = []
    for part in [*node.bases, *(k.value for k in node.keywords), *node.decorator_list]:
        names += _free_names(ast.Expr(part))
    class_bound: set[str] = set()
    for stmt in node.body:
        free = _free_names(stmt)
        names += free if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) else \
            [name for name in free if name not in class_bound]
        class_bound.update(_target_names_of(stmt))
    return [name for name in dict.fromkeys(names) if name != node.name]


def _target_names_of(stmt: ast.stmt) -> list[str]:
    """The names a class-body statement binds."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name]
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
    return [n.id for t in targets if t is not None for n in ast.walk(t) if isinstance(n, ast.Name)]


def _comment(text: str, width: int = 116) -> list[str]:
    """`text` as comment lines of at most `width` characters, broken between words."""
    lines, current = [], "#"
    for word in text.split():
        if len(current) + 1 + len(word) > width and current != "#":
            lines.append(current)
            current = "#"
        current += " " + word
    return lines + [current]


def _annotation_names(node: ast.AST) -> set[str]:
    found: set[str] = set()
    for inner in ast.walk(node):
        annotations = []
        if isinstance(inner, ast.arg) and inner.annotation is not None:
            annotations.append(inner.annotation)
        elif isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)) and inner.returns is not None:
            annotations.append(inner.returns)
        elif isinstance(inner, ast.AnnAssign):
            annotations.append(inner.annotation)
        for annotation in annotations:
            if isinstance(annotation, ast.Constant):  # already a string
                continue
            found |= {n.id for n in ast.walk(annotation) if isinstance(n, ast.Name)}
    return found


def _drop_unread_attributes(nodes: list[ast.stmt]) -> None:
    """In classes the script copied, drop `self.x = <no call>` where nothing in the script reads `x`."""
    read: set[str] = set()
    for node in nodes:
        for inner in ast.walk(node):
            if isinstance(inner, ast.Attribute) and isinstance(inner.ctx, ast.Load):
                read.add(inner.attr)
            elif isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name) \
                    and inner.func.id in ("getattr", "hasattr", "setattr") and len(inner.args) > 1 \
                    and isinstance(inner.args[1], ast.Constant):
                read.add(str(inner.args[1].value))
            elif isinstance(inner, ast.Constant) and isinstance(inner.value, str) and inner.value.isidentifier():
                read.add(inner.value)  # a name spelled as a string may be read through it
    for node in nodes:
        if not isinstance(node, ast.ClassDef) or not getattr(node, "_trim", False):
            continue
        for method in node.body:
            if not isinstance(method, ast.FunctionDef):
                continue
            method.body = [stmt for stmt in method.body if not (
                isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Attribute)
                and isinstance(stmt.targets[0].value, ast.Name) and stmt.targets[0].value.id == "self"
                and stmt.targets[0].attr not in read and not any(isinstance(n, ast.Call) for n in ast.walk(stmt.value)))
            ] or [ast.Pass()]
