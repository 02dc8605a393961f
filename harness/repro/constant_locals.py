"""Locals of a function that one cell makes constant: folded once, their uses get the value."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Any

from harness.repro.cleanup import _DISPLAYS, _locals
from harness.repro.facts import UNKNOWN, literal
from harness.repro.folder import _Folder

if TYPE_CHECKING:
    from harness.repro.specialise import Specialiser


def _constant_locals(func: ast.FunctionDef, env: dict[str, Any], attrs, exprs, owner: Specialiser) -> dict[str, Any]:
    """Local names assigned exactly once, to a value the facts decide."""
    stores: dict[str, int] = {}
    for node in ast.walk(func):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            stores[node.id] = stores.get(node.id, 0) + 1
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node is not func:
            stores[node.name] = stores.get(node.name, 0) + 2
        elif isinstance(node, ast.ExceptHandler) and node.name:
            stores[node.name] = stores.get(node.name, 0) + 2
        elif isinstance(node, ast.arg):
            stores[node.arg] = stores.get(node.arg, 0) + 2
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                key = (alias.asname or alias.name).split(".")[0]
                stores[key] = stores.get(key, 0) + 2
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            for name in node.names:
                stores[name] = stores.get(name, 0) + 2
    found: dict[str, Any] = {}
    folder = _Folder(env, attrs, exprs, owner, shadow=set())
    folder.local_names = _locals(func)
    for node in ast.walk(func):
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target = node.targets[0]
        pairs = []
        returned = owner.returns.get(node.value.func.id) \
            if isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name) else None
        if isinstance(target, ast.Name) and returned is None:
            pairs = [(target, node.value)]
        elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple) \
                and len(target.elts) == len(node.value.elts):
            pairs = list(zip(target.elts, node.value.elts))
        elif returned is not None:  # `weight, bias = params(module)`, bias fixed by the facts
            kind, value = returned
            if kind == "value" and isinstance(target, ast.Name) and stores.get(target.id) == 1 \
                    and literal(value) is not None:
                found[target.id] = value
            elif kind == "tuple" and isinstance(target, ast.Tuple) and len(value) == len(target.elts):
                for name, value in zip(target.elts, value):
                    if isinstance(name, ast.Name) and stores.get(name.id) == 1 and value is not UNKNOWN \
                            and literal(value) is not None:
                        found[name.id] = value
            continue
        values = []
        for name, value in pairs:
            if not isinstance(name, ast.Name) or stores.get(name.id) != 1:
                break
            folder.env = {**env, **found}
            result = folder.value(value)
            if result is UNKNOWN or literal(result) is None or isinstance(value, _DISPLAYS):
                break  # a dict/list written here is the function's own, to fill: not a constant
            values.append((name.id, result))
        else:
            found.update(values)
    return found
