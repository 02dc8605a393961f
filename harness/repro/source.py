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
import importlib
import inspect
import sys
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError
from harness.repro.facts import Facts
from harness.repro.specialise import Specialiser
from harness.repro.ast_names import (LOCAL_PACKAGES, _BUILTINS, _annotation_names, _bindings, _comment, _def_name,
                                     _drop_unread_attributes, _free_names, _hoisted_imports, _tag,
                                     _unalias_modules)
from harness.repro.render import render
from harness.repro.script_views import _Callees, _Globals, _Noops, _Returns, _Unfoldable


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
