"""What a repro script's specialiser knows about one cell (`Facts`), and the small pure AST helpers folding needs."""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass, field
from typing import Any

UNKNOWN = object()


_SMALL = 40  # longest repr of a value that replaces a name at its uses


_FOLDABLE_CALLS = {"bool": bool, "int": int, "str": str, "tuple": tuple, "len": len, "float": float}


@dataclass
class Facts:
    """What a cell fixes, for `specialise`."""

    params: dict[str, Any] = field(default_factory=dict)  # parameter name -> value, wherever a function has it
    func_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # function -> {parameter: value}
    attrs: dict[str, dict[str, Any]] = field(default_factory=dict)  # variable -> {attribute: value}
    class_attrs: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # class -> variable -> {...}
    exprs: dict[str, dict[str, Any]] = field(default_factory=dict)  # function -> {expression source: value}
    dead_code: bool = True  # also drop assignments nothing reads (not for the backend under test)

    def removed(self, function: str, params: list[str]) -> list[str]:
        """The parameters of `function` (in `params`) that the facts fix: they leave its signature and its calls."""
        fixed = self.func_params.get(function, {})
        return [name for name in params if name in self.params or name in fixed]

    def value(self, function: str, name: str) -> Any:
        fixed = self.func_params.get(function, {})
        return fixed[name] if name in fixed else self.params.get(name, UNKNOWN)


def literal(value: Any) -> ast.expr | None:
    """An AST literal for `value`, or None when it has none (a tensor, a function, ...)."""
    try:
        text = repr(value)
        node = ast.parse(text, mode="eval").body
        if ast.literal_eval(node) != value and not (value != value):  # NaN
            return None
    except (SyntaxError, ValueError, TypeError, RecursionError):
        return None
    return node


def signature(node: ast.FunctionDef) -> list[str]:
    """Parameter names in call order (positional first), `self` included."""
    args = node.args
    return [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]


def _substitute(expr: ast.expr, values: dict[str, ast.expr]) -> ast.expr:
    class _Put(ast.NodeTransformer):
        def visit_Name(self, node):
            if isinstance(node.ctx, ast.Load) and node.id in values:
                return ast.copy_location(copy.deepcopy(values[node.id]), node)
            return node

    return _Put().visit(copy.deepcopy(expr))


def unfoldable(node: ast.FunctionDef) -> bool:
    """A helper whose body is `name = <expr>` lines then `return <expr>`, small enough to write at its calls."""
    if not isinstance(node, ast.FunctionDef) or node.decorator_list or len(node.body) > 3 \
            or not isinstance(node.body[-1], ast.Return) or node.body[-1].value is None \
            or node.args.vararg or node.args.kwarg:
        return False
    for stmt in node.body[:-1]:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
            return False
        if any(isinstance(n, ast.Call) and not (isinstance(n.func, ast.Name) and n.func.id == "getattr")
               for n in ast.walk(stmt.value)):
            return False
    return len(ast.unparse(node.body[-1].value)) <= 90


def _compare(op: ast.cmpop, left: Any, right: Any) -> Any:
    try:
        return {ast.Eq: lambda: left == right, ast.NotEq: lambda: left != right, ast.Is: lambda: left is right,
                ast.IsNot: lambda: left is not right, ast.In: lambda: left in right,
                ast.NotIn: lambda: left not in right, ast.Lt: lambda: left < right, ast.LtE: lambda: left <= right,
                ast.Gt: lambda: left > right, ast.GtE: lambda: left >= right}[type(op)]()
    except (TypeError, KeyError):
        return UNKNOWN


def _pure(node: ast.AST) -> bool:
    """An expression without calls (so dropping it changes nothing)."""
    return not any(isinstance(n, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr))
                   for n in ast.walk(node))


def _target_names(targets: list[ast.expr]) -> list[str]:
    """The names an assignment binds, when it binds only plain names."""
    names = []
    for target in targets:
        items = target.elts if isinstance(target, ast.Tuple) else [target]
        for item in items:
            if not isinstance(item, ast.Name):
                return []
            names.append(item.id)
    return names
