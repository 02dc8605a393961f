"""After folding: drop dead code, constant and overwritten assignments, single-use temporaries, unused parameters."""

from __future__ import annotations

import ast
import copy

from harness.repro.facts import _target_names, signature

_DISPLAYS = (ast.Dict, ast.List, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)


def _drop_dead(func: ast.FunctionDef, body: list[ast.stmt]) -> list[ast.stmt]:
    """Drop top-level assignments whose names nothing reads and whose inputs nothing after them reads.

    `gen = ...; a = torch.randn(..., generator=gen); b = torch.randn(..., generator=gen)` with `b` unread
    loses `b`'s line: whatever it changed (gen) is not read after it.
    """
    body = list(body)
    changed = True
    while changed:
        changed = False
        loads = {n.id for n in ast.walk(func) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        for i in range(len(body) - 1, -1, -1):
            stmt = body[i]
            if not isinstance(stmt, ast.Assign):
                continue
            names = _target_names(stmt.targets)
            if not names or any(name in loads for name in names):
                continue
            inputs = {n.id for n in ast.walk(stmt.value) if isinstance(n, ast.Name)}
            later = {n.id for s in body[i + 1:] for n in ast.walk(s) if isinstance(n, ast.Name)}
            local = inputs & _locals(func)
            calls = any(isinstance(n, ast.Call) for n in ast.walk(stmt.value))
            if (calls and local & later) or not _removable(stmt.value, _locals(func)):
                continue  # a call may change what it reads, and something later reads that
            del body[i]
            func.body = body
            changed = True
            break
    return body


def _inline_temporaries(func: ast.FunctionDef, body: list[ast.stmt]) -> list[ast.stmt]:
    """`shape = (e, h); x = empty(shape)` -> `x = empty((e, h))`: a pure value read once, later in the same block.

    Only top-level statements of the function, never into a loop, a nested function or a comprehension
    (that would evaluate it more than once), and only when nothing in between rebinds what it reads.
    """
    body = list(body)
    local = _locals(func)
    i = 0
    while i < len(body):
        stmt = body[i]
        names = _target_names(stmt.targets) if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else []
        if len(names) != 1 or not isinstance(stmt.targets[0], ast.Name) or not _simple(stmt.value):
            i += 1
            continue
        name = names[0]
        uses = [n for n in ast.walk(func) if isinstance(n, ast.Name) and n.id == name]
        loads = [n for n in uses if isinstance(n.ctx, ast.Load)]
        reads = {n.id for n in ast.walk(stmt.value) if isinstance(n, ast.Name)} & local
        user = next((j for j in range(i + 1, len(body)) if any(n in loads for n in ast.walk(body[j]))), None)
        if len(uses) != 2 or len(loads) != 1 or user is None or _inside_repeat(body[user], loads[0]) \
                or any(isinstance(n, ast.Name) and n.id in reads and not isinstance(n.ctx, ast.Load)
                       for s in body[i + 1:user + 1] for n in ast.walk(s)):
            i += 1
            continue
        value = stmt.value

        class _Put(ast.NodeTransformer):
            def visit_Name(self, node):
                return copy.deepcopy(value) if node is loads[0] else node

        body[user] = _Put().visit(body[user])
        del body[i]
        func.body = body
    return body


def _simple(value: ast.expr) -> bool:
    """Names, constants, displays, arithmetic and pure calls: nothing a statement in between could change."""
    funcs = {id(n.func) for n in ast.walk(value) if isinstance(n, ast.Call)}
    for node in ast.walk(value):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if name not in _PURE_CALLS:
                return False
        elif isinstance(node, ast.Attribute):
            if id(node) not in funcs:
                return False
        elif not isinstance(node, (ast.Name, ast.Constant, ast.Tuple, ast.List, ast.Dict, ast.BinOp, ast.UnaryOp,
                                   ast.operator, ast.unaryop, ast.expr_context, ast.keyword)):
            return False
    return True


def _inside_repeat(stmt: ast.stmt, target: ast.AST) -> bool:
    """Whether `target` sits in a loop, nested function, lambda or comprehension within `stmt`."""
    def walk(node, repeated):
        if node is target:
            return repeated
        repeats = isinstance(node, (ast.For, ast.While, ast.FunctionDef, ast.Lambda, ast.ListComp, ast.SetComp,
                                    ast.DictComp, ast.GeneratorExp, ast.AsyncFor))
        return any(walk(child, repeated or repeats) for child in ast.iter_child_nodes(node))
    return walk(stmt, False)


# Calls that only compute a value from their arguments (tensor reshuffles), so an unread result can go.
_PURE_CALLS = {"cat", "stack", "reshape", "transpose", "view", "permute", "chunk", "contiguous", "clone", "t"}


def _removable(value: ast.expr, local: set[str]) -> bool:
    """Nothing in `value` changes state but locals: pure calls, and random draws from a local generator."""
    for node in ast.walk(value):
        if isinstance(node, (ast.Yield, ast.YieldFrom, ast.Await, ast.NamedExpr, ast.Lambda)):
            return False
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            generator = next((k.value for k in node.keywords if k.arg == "generator"), None)
            if name in _PURE_CALLS or (isinstance(generator, ast.Name) and generator.id in local):
                continue
            return False
    return True


def _drop_overwritten(body: list[ast.stmt]) -> list[ast.stmt]:
    """`f = a.b` right before `f = g(a.b)`: the first store is never read (its value has no call)."""
    out = []
    for i, stmt in enumerate(body):
        following = body[i + 1] if i + 1 < len(body) else None
        if isinstance(stmt, ast.Assign) and isinstance(following, ast.Assign) and len(stmt.targets) == 1 \
                and isinstance(stmt.targets[0], ast.Name) and len(following.targets) == 1 \
                and isinstance(following.targets[0], ast.Name) and following.targets[0].id == stmt.targets[0].id \
                and not any(isinstance(n, ast.Call) for n in ast.walk(stmt.value)) \
                and not any(isinstance(n, ast.Name) and n.id == stmt.targets[0].id for n in ast.walk(following.value)):
            continue
        out.append(stmt)
    return out


def _locals(func: ast.FunctionDef) -> set[str]:
    names = set(signature(func))
    names |= {n.id for n in ast.walk(func) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return names


def _drop_params(func: ast.FunctionDef, removed: set[str]) -> None:
    args = func.args
    for kind in ("posonlyargs", "args"):
        params = getattr(args, kind)
        keep = [p for p in params if p.arg not in removed]
        if kind == "args":
            # defaults line up with the last positional parameters
            defaults = list(args.defaults)
            offset = len(params) - len(defaults)
            args.defaults = [d for i, d in enumerate(defaults) if params[offset + i].arg not in removed]
        setattr(args, kind, keep)
    pairs = [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if a.arg not in removed]
    args.kwonlyargs = [a for a, _ in pairs]
    args.kw_defaults = [d for _, d in pairs]


def _strip_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[1:]
    return body


def _pass(near: ast.AST) -> ast.Pass:
    return ast.Pass(lineno=getattr(near, "lineno", 1), col_offset=0)


def _copy_with_orig(node: ast.AST) -> ast.AST:
    """A deep copy whose statements (and exception handlers) remember their original as `_orig`."""
    new = copy.deepcopy(node)
    for original, copied in zip(ast.walk(node), ast.walk(new)):
        if isinstance(original, (ast.stmt, ast.excepthandler)):
            copied._orig = original
    return new
