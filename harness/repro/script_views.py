"""Views of a Script the specialiser consults by name: callees, no-op functions, constant returns, helpers,
globals."""

from __future__ import annotations

import ast

from harness.repro.facts import UNKNOWN, unfoldable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.repro.source import Script

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
