"""Source inlining for repro scripts: this repository's definitions pasted into a script that imports none of it.

The script must run with only torch (and transformers) installed, so every function, class or constant
of harness/, backends/ or tests/ it uses is pasted in as written here (a fix here shows up in the next
script), specialised to the cell by harness/repro/specialise.py. `Script.need` inlines a definition and,
depth first, every definition it uses: a name the code defines in its own module or imports from a local
package is inlined (under the name its user calls it), a name imported from anywhere else (torch,
transformers, the standard library) goes into the script's one import block, imports inside function
bodies included.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError
from harness.repro.specialise import UNKNOWN, Facts, Specialiser, unfoldable

LOCAL_PACKAGES = ("harness", "backends", "tests")  # what a standalone script may not import
_BUILTINS = set(dir(builtins))
_NOQA = re.compile(r"\s+# noqa\b.*$")
_GROUPS = {0: ": the code under test", 1: ": what the harness runs around it", 2: ""}


@dataclass
class _Module:
    """One parsed module: its top-level definitions and what its imports bind."""

    name: str
    lines: list[str]
    defs: dict[str, ast.stmt]
    imports: dict[str, tuple[str, str | None]]  # bound name -> (module, imported name or None for the module)
    effects: list[ast.stmt] = field(default_factory=list)  # registrations: decorated defs, top-level calls


@dataclass
class _Def:
    name: str  # the name the script gives it
    origin: str  # module.name it was copied from ("" for code written for the script)
    node: ast.stmt | None = None  # None: bound by the import block


@dataclass
class Script:
    """One script's definitions in dependency order, and its import block."""

    facts: Facts
    verbatim: tuple[str, ...] = ()  # modules whose code is the code under test: folded, never trimmed
    drop_members: dict[str, tuple[str, ...]] = field(default_factory=dict)  # class -> methods left out
    select: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # module-level dict -> keys kept
    drop_calls: set[str] = field(default_factory=set)  # functions whose calls the script leaves out
    graft: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)  # stand-in class -> real methods
    defs: dict[str, _Def] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    import_lines: dict[tuple[str, str | None], str] = field(default_factory=dict)  # (module, name) -> bound name

    def __post_init__(self):
        self._modules: dict[str, _Module] = {}
        self._specialised: dict[tuple[str, str], ast.stmt] = {}
        self._busy: set[tuple[str, str]] = set()
        self._glue: dict[str, ast.stmt] = {}
        self._effects_done: set[str] = set()

    # ---- what goes in -----------------------------------------------------------------------------
    def need(self, module_name: str, *names: str) -> None:
        """Inline `names` as `module_name` defines (or imports) them, with everything they use."""
        for name in names:
            self._resolve(name, module_name, {})

    def glue(self, text: str, *contexts: str) -> None:
        """Add code written for the script (main, stand-ins); a free name resolves in the first of `contexts`
        that defines or imports it, else it must be defined already."""
        tree = ast.parse(text)
        _tag(tree, text.splitlines())
        for node in tree.body:
            if _def_name(node):
                self._glue[_def_name(node)] = node
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name in self.graft:
                home, methods = self.graft[node.name]
                real = self._module(home).defs[node.name]
                node.body += [s for s in real.body if isinstance(s, ast.FunctionDef) and s.name in methods]
            specialiser = self._specialiser(*contexts)
            new = self._specialise_node(node, specialiser, self._module(contexts[0]))
            hoisted = _hoisted_imports(specialiser, contexts[0])
            for free in _free_names(new):
                home = next((c for c in contexts if free in self._module(c).defs or free in self._module(c).imports),
                            contexts[0])
                self._resolve(free, home, hoisted)
            self._emit(_def_name(node) or f"<glue {len(self.order)}>", "", new)

    def text(self) -> str:
        """The import block, then the definitions by where they come from: the code under test, the rest of
        backends/, harness/, the script's own; a comment line names each group's files."""
        defs = [self.defs[name] for name in self.order if self.defs[name].node is not None]
        _drop_unread_attributes([d.node for d in defs])
        groups: dict[int, list[_Def]] = {}
        for d in defs:
            groups.setdefault(self._group(d), []).append(d)
        parts = [self._import_block([d.node for d in defs])]
        for rank in sorted(groups):
            files = sorted({d.origin.rsplit(".", 1)[0].replace(".", "/") + ".py" for d in groups[rank] if d.origin})
            title = _comment(f"{', '.join(files)}{_GROUPS[rank]}") if files else []
            parts.append("\n".join(title + [line for d in groups[rank] for line in render(d.node, 0)]))
        return "\n\n".join(part.rstrip("\n") for part in parts if part.strip()) + "\n"

    def _group(self, d: _Def) -> int:
        module = d.origin.rsplit(".", 1)[0] if d.origin else ""
        if not module:
            return 2
        return 0 if module in self.verbatim else 1

    # ---- resolution -------------------------------------------------------------------------------
    def _resolve(self, name: str, module_name: str, hoisted: dict[str, tuple[str, str | None]]) -> None:
        module = self._module(module_name)
        if name in _BUILTINS and name not in module.defs and name not in module.imports and name not in hoisted:
            return
        if name in self.defs and self.defs[name].origin == "":
            return  # written for the script (a stand-in): it wins
        if name in hoisted:
            self._resolve_import(name, *hoisted[name])
        elif name in module.defs:
            self._inline(name, module, name)
        elif name in module.imports:
            self._resolve_import(name, *module.imports[name])
        elif name not in self.defs:
            raise HarnessError(f"repro: {module_name} uses {name!r}, which the script cannot define", key="CELL_ID")

    def _resolve_import(self, bound: str, source: str, imported: str | None) -> None:
        if source.split(".")[0] in LOCAL_PACKAGES:
            if imported is None:
                raise HarnessError(f"repro: module alias {bound} ({source}) left in inlined code", key="CELL_ID")
            self._inline(bound, self._module(source), imported)
        else:
            self.add_import(source, imported, bound)

    def _inline(self, bound: str, module: _Module, name: str) -> None:
        origin = f"{module.name}.{name}"
        if bound in self.defs:
            if self.defs[bound].origin not in (origin, ""):
                raise HarnessError(f"repro: two definitions named {bound}: {self.defs[bound].origin} and {origin}",
                                   key="CELL_ID")
            return
        if name not in module.defs:  # re-exported: follow the module's own import
            if name in module.imports:
                source, imported = module.imports[name]
                if source.split(".")[0] in LOCAL_PACKAGES and imported is not None:
                    self._inline(bound, self._module(source), imported)
                    return
                self.add_import(source, imported, bound)
                return
            raise HarnessError(f"repro: {module.name} has no definition {name!r}", key="CELL_ID")
        key = (module.name, name)
        if key in self._busy:
            return  # a cycle (a function using itself, say): its definition is on the way
        self._busy.add(key)
        try:
            specialiser = self._specialiser(module.name)
            new = self._specialise_node(module.defs[name], specialiser, module)
            if bound != name and isinstance(new, (ast.FunctionDef, ast.ClassDef)):
                new.name = bound
            self._dependencies(new, module, _hoisted_imports(specialiser, module.name))
            self._emit(bound, origin, new)
        finally:
            self._busy.discard(key)
        if module.name in self.verbatim and module.name not in self._effects_done:
            # The code under test registers things (custom ops, their fake and autograd formulas) that
            # nothing names: take every registration of its module along.
            self._effects_done.add(module.name)
            for stmt in module.effects:
                name = _def_name(stmt)
                if name:
                    self._inline(name, module, name)
                else:
                    new = self._specialise_node(stmt, self._specialiser(module.name), module)
                    self._dependencies(new, module, {})
                    self._emit(f"<{module.name} line {stmt.lineno}>", f"{module.name}.<line {stmt.lineno}>", new)

    def _dependencies(self, node: ast.stmt, module: _Module, hoisted) -> None:
        for free in _free_names(node):
            self._resolve(free, module.name, hoisted)

    def _emit(self, bound: str, origin: str, node: ast.stmt) -> None:
        if bound in self.defs:
            return
        self.defs[bound] = _Def(bound, origin, node)
        self.order.append(bound)

    # ---- specialisation ---------------------------------------------------------------------------
    def _specialiser(self, *module_names: str) -> Specialiser:
        verbatim = module_names[0] in self.verbatim
        facts = self.facts if not verbatim else Facts(**{**self.facts.__dict__, "dead_code": False})
        specialiser = Specialiser(facts)
        specialiser.callees = _Callees(self, module_names)
        specialiser.noops = _Noops(self, module_names)
        specialiser.returns = _Returns(self, module_names)
        specialiser.globals = _Globals(self, module_names)
        specialiser.unfoldable = _Unfoldable(self, module_names)
        return specialiser

    def _home(self, name: str, module_names: tuple[str, ...]) -> str:
        """The first of `module_names` that defines or imports `name` (else the first)."""
        return next((m for m in module_names if name in self._module(m).defs or name in self._module(m).imports),
                    module_names[0])

    def _specialise_node(self, node: ast.stmt, specialiser: Specialiser, module: _Module) -> ast.stmt:
        node = _unalias_modules(node, module)
        if isinstance(node, ast.FunctionDef):
            return specialiser.function(node)
        if isinstance(node, ast.ClassDef):
            new = specialiser.klass(node, self.drop_members.get(node.name, ()))
            new._trim = specialiser.facts.dead_code and module.name.split(".")[0] in LOCAL_PACKAGES
            return new
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            name = _def_name(node)
            if name in self.select:
                keep = self.select[name]
                new = ast.Assign(targets=node.targets, value=ast.Dict(
                    keys=[k for k in node.value.keys if isinstance(k, ast.Constant) and k.value in keep],
                    values=[v for k, v in zip(node.value.keys, node.value.values)
                            if isinstance(k, ast.Constant) and k.value in keep]), lineno=node.lineno)
                new._orig, new._dict_of = node, node
                return new
        node._orig = node
        return node

    def specialised(self, module_name: str, name: str) -> ast.stmt | None:
        """`name` of `module_name` specialised (not emitted), for what callers need to know about it."""
        module = self._module(module_name)
        if name not in module.defs:
            if name in module.imports:
                source, imported = module.imports[name]
                if source.split(".")[0] in LOCAL_PACKAGES and imported is not None:
                    return self.specialised(source, imported)
            return None
        key = (module_name, name)
        if key not in self._specialised:
            if key in self._busy:
                return None
            self._busy.add(key)
            try:
                node = module.defs[name]
                self._specialised[key] = self._specialise_node(node, self._specialiser(module_name), module) \
                    if isinstance(node, ast.FunctionDef) else node
            finally:
                self._busy.discard(key)
        return self._specialised[key]

    def origin_module(self, module_name: str, name: str) -> str | None:
        """The local module that defines what `name` means in `module_name`, if any."""
        module = self._module(module_name)
        if name in module.defs:
            return module_name
        if name in module.imports:
            source, imported = module.imports[name]
            if source.split(".")[0] in LOCAL_PACKAGES and imported is not None:
                return self.origin_module(source, imported)
        return None

    def original(self, module_name: str, name: str) -> ast.stmt | None:
        if name in self._glue:
            return self._glue[name]
        module = self._module(module_name)
        if name in module.defs:
            return module.defs[name]
        if name in module.imports:
            source, imported = module.imports[name]
            if source.split(".")[0] in LOCAL_PACKAGES and imported is not None:
                return self.original(source, imported)
        return None

    # ---- modules and imports ----------------------------------------------------------------------
    def _module(self, module_name: str) -> _Module:
        if module_name not in self._modules:
            module = importlib.import_module(module_name)
            source = inspect.getsource(module)
            tree = ast.parse(source)
            lines = source.splitlines()
            _tag(tree, lines)
            defs, imports = {}, {}
            for node in ast.walk(tree):  # imports inside functions too: what a name means in this module
                if isinstance(node, (ast.Import, ast.ImportFrom)) and node not in tree.body:
                    imports.update(_bindings(node, module_name))
            for node in tree.body:
                name = _def_name(node)
                if name:
                    defs[name] = node
                elif isinstance(node, (ast.Import, ast.ImportFrom)):
                    imports.update(_bindings(node, module_name))
            effects = [node for node in tree.body[1:] if isinstance(node, ast.Expr) or (
                isinstance(node, ast.FunctionDef) and any(not isinstance(d, ast.Name) for d in node.decorator_list))]
            self._modules[module_name] = _Module(module_name, lines, defs, imports, effects)
        return self._modules[module_name]

    def add_import(self, source: str, imported: str | None = None, bound: str | None = None) -> None:
        """`import source` (imported None) or `from source import imported [as bound]` in the import block."""
        bound = bound or imported or source.split(".")[0]
        if source == "__future__":
            return
        origin = f"import {source}" + (f".{imported}" if imported else "")
        if bound in self.defs and self.defs[bound].origin not in (origin, ""):
            raise HarnessError(f"repro: two definitions named {bound}: {self.defs[bound].origin} and {origin}",
                               key="CELL_ID")
        self.import_lines[(source, imported)] = bound
        self.defs.setdefault(bound, _Def(bound, origin))

    def _import_block(self, nodes: list[ast.stmt]) -> str:
        """One import block (standard library, then the rest); typing's names for the annotations that use them,
        postponed annotations only for a name nothing defines."""
        import typing

        defined = set(self.defs) | _BUILTINS
        undefined = {name for node in nodes for name in _annotation_names(node)} - defined
        for name in sorted(undefined):
            if hasattr(typing, name):
                self.add_import("typing", name)
        needs_future = any(not hasattr(typing, name) for name in undefined)
        groups: dict[bool, list[str]] = {True: [], False: []}
        froms: dict[str, list[str]] = {}
        for (source, imported), bound in sorted(self.import_lines.items(), key=lambda i: (i[0][0], str(i[0][1]))):
            if imported is None:
                text = f"import {source}" + (f" as {bound}" if bound not in (source.split(".")[0], source) else "")
                groups[source.split(".")[0] in sys.stdlib_module_names].append(text)
            else:
                froms.setdefault(source, []).append(imported + (f" as {bound}" if bound != imported else ""))
        for source, names in froms.items():
            groups[source.split(".")[0] in sys.stdlib_module_names].append(f"from {source} import {', '.join(names)}")
        order = lambda line: (line.split()[1], line.startswith("from"))  # noqa: E731
        blocks = ["from __future__ import annotations"] if needs_future else []
        blocks += ["\n".join(sorted(lines, key=order)) for lines in (groups[True], groups[False]) if lines]
        return "\n\n".join(blocks)


class _Callees(dict):
    """name -> original definition (what a call site must know about the callee's parameters)."""

    def __init__(self, script: Script, module_names: tuple[str, ...]):
        super().__init__()
        self.script, self.module_names = script, module_names

    def get(self, name, default=None):
        found = self.script.original(self.script._home(name, self.module_names), name)
        return found if isinstance(found, (ast.FunctionDef, ast.ClassDef)) else default


class _Noops:
    """Functions whose specialised body is `pass`: their calls (with plain arguments) can go."""

    def __init__(self, script: Script, module_names: tuple[str, ...]):
        self.script, self.module_names = script, module_names

    def __contains__(self, name: str) -> bool:
        if name in self.script.drop_calls:
            return True
        node = self.script.specialised(self.script._home(name, self.module_names), name)
        return isinstance(node, ast.FunctionDef) and all(isinstance(s, ast.Pass) for s in node.body)


class _Returns:
    """name -> the values of the tuple a function always returns (UNKNOWN where the facts do not decide)."""

    def __init__(self, script: Script, module_names: tuple[str, ...]):
        self.script, self.module_names = script, module_names

    def get(self, name: str):
        if name in self.script._glue:
            return None
        node = self.script.specialised(self.script._home(name, self.module_names), name)
        if not isinstance(node, ast.FunctionDef) or len(node.body) != 1 or not isinstance(node.body[0], ast.Return):
            return None
        value = node.body[0].value
        if isinstance(value, ast.Constant):
            return "value", value.value
        if not isinstance(value, ast.Tuple):
            return None
        return "tuple", [item.value if isinstance(item, ast.Constant) else UNKNOWN for item in value.elts]


class _Unfoldable:
    """name -> its specialised definition, when it is a one-expression helper of code not under test."""

    def __init__(self, script: Script, module_names: tuple[str, ...]):
        self.script, self.module_names = script, module_names

    def get(self, name: str):
        if name in self.script._glue:
            return None
        home = self.script._home(name, self.module_names)
        source = self.script.origin_module(home, name)
        if source is None or source in self.script.verbatim or source != self.module_names[0]:
            return None  # its names mean what they mean in its own module: only same-module helpers
        node = self.script.specialised(home, name)
        return node if unfoldable(node) else None


class _Globals:
    """name -> value of a module-level constant (a literal assignment) the code reads, else UNKNOWN."""

    def __init__(self, script: Script, module_names: tuple[str, ...]):
        self.script, self.module_names = script, module_names

    def get(self, name: str, default=UNKNOWN):
        if name in self.script._glue:
            return default
        node = self.script.original(self.script._home(name, self.module_names), name)
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            try:
                return ast.literal_eval(node.value)
            except ValueError:
                if isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name) \
                        and node.value.func.id == "tuple" and len(node.value.args) == 1:
                    inner = node.value.args[0]  # `LAYOUTS = tuple(LAYOUT_FLAGS)`
                    if isinstance(inner, ast.Name):
                        value = self.get(inner.id)
                        return default if value is UNKNOWN else tuple(value)
        return default


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


# ---- rendering: unchanged statements keep their text, changed ones are unparsed --------------------
def render(node: ast.stmt, indent: int) -> list[str]:
    """The source lines of statement `node` at `indent` spaces."""
    orig = getattr(node, "_orig", None)
    pad = " " * indent
    if getattr(node, "_dict_of", None) is not None:
        return _render_selected_dict(node, pad)
    if orig is not None and hasattr(orig, "_src") and not _compound(node) and ast.dump(node) == ast.dump(orig):
        return _reindent(_segment(orig), orig.col_offset, indent)
    if _compound(node):
        return _render_compound(node, orig, indent)
    return [pad + line for line in ast.unparse(node).splitlines()]


def _compound(node: ast.AST) -> bool:
    return isinstance(node, (ast.If, ast.For, ast.While, ast.With, ast.Try, ast.FunctionDef, ast.ClassDef))


def _render_compound(node, orig, indent: int) -> list[str]:
    pad = " " * indent
    out = _header(node, orig, indent)
    out += _block(node.body, indent + 4)
    if isinstance(node, ast.Try):
        for handler in node.handlers:
            head = copy_shallow(handler, body=[ast.Pass()])
            out += [pad + ast.unparse(head).splitlines()[0]]
            out += _block(handler.body, indent + 4)
    orelse = getattr(node, "orelse", None)
    if orelse:
        elif_ = isinstance(node, ast.If) and len(orelse) == 1 and isinstance(orelse[0], ast.If) and \
            _is_elif(orelse[0])
        if elif_:
            lines = render(orelse[0], indent)
            if lines[0].lstrip().startswith("if "):
                lines[0] = pad + "el" + lines[0].lstrip()
            out += lines
        else:
            out += [pad + "else:"] + _block(orelse, indent + 4)
    if isinstance(node, ast.Try) and node.finalbody:
        out += [pad + "finally:"] + _block(node.finalbody, indent + 4)
    return out


def _is_elif(node: ast.If) -> bool:
    orig = getattr(node, "_orig", None)
    if orig is None or not hasattr(orig, "_src"):
        return True
    return orig._src[orig.lineno - 1][orig.col_offset:].startswith("elif")


def _block(stmts: list[ast.stmt], indent: int) -> list[str]:
    out: list[str] = []
    for stmt in stmts:
        out += render(stmt, indent)
    return out or [" " * indent + "pass"]


def _header(node, orig, indent: int) -> list[str]:
    """The compound statement's first clause header: its own text when unchanged, else unparsed."""
    same = orig is not None and hasattr(orig, "_src") and _head_dump(node) == _head_dump(orig)
    if same and orig.body and orig.body[0].lineno > orig.lineno:
        start = min([d.lineno for d in getattr(orig, "decorator_list", [])] + [orig.lineno])
        lines = orig._src[start - 1:orig.body[0].lineno - 1]
        while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("#")):
            lines = lines[:-1]
        if lines and lines[-1].rstrip().endswith(":") or lines and "#" in lines[-1]:
            return _reindent("\n".join(lines), orig.col_offset, indent)
    head = copy_shallow(node, body=[ast.Pass()], orelse=[], handlers=[], finalbody=[])
    if isinstance(node, ast.Try):
        return [" " * indent + "try:"]
    lines = ast.unparse(head).splitlines()[:-1]
    return [" " * indent + line for line in lines]


def _head_dump(node) -> str:
    return ast.dump(copy_shallow(node, body=[], orelse=[], handlers=[], finalbody=[]))


def copy_shallow(node, **fields):
    import copy

    new = copy.copy(node)
    for name, value in fields.items():
        if hasattr(new, name):
            setattr(new, name, value)
    return new


def _segment(node: ast.AST) -> str:
    start = min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno])
    lines = node._src[start - 1:node.end_lineno]
    return "\n".join(_NOQA.sub("", line) for line in lines)


def _reindent(text: str, current: int, indent: int) -> list[str]:
    out = []
    for line in text.splitlines():
        stripped = line[current:] if line[:current].strip() == "" else line.lstrip()
        out.append((" " * indent + stripped) if stripped.strip() else "")
    return out


def _render_selected_dict(node, pad: str) -> list[str]:
    orig = node._dict_of
    name = ast.unparse(node.targets[0])
    lines = [f"{pad}{name} = {{"]
    for key, value in zip(node.value.keys, node.value.values):
        start, end = key, value
        text = "\n".join(orig._src[start.lineno - 1:end.end_lineno])
        first = orig._src[start.lineno - 1]
        body = text[start.col_offset:len(text) - (len(orig._src[end.end_lineno - 1]) - end.end_col_offset)]
        body_lines = body.splitlines()
        lines.append(pad + "    " + body_lines[0])
        lines += _reindent("\n".join(body_lines[1:]), len(first) - len(first.lstrip()), len(pad) + 4)
        lines[-1] += ","
    lines.append(pad + "}")
    return lines
