"""Partial evaluation of this repository's code for repro scripts: fold what one cell fixes, keep the rest as written.

A repro script pastes the harness's own functions (issue 16: one run loop, not a template of it), but a
function written for every cell carries every layout's branches. A `Specialiser` folds what the cell fixes
(`Facts`): the cell's spec (`spec[...]`), parameters (removed from the signature and from the script's calls),
attributes (a layout's flags such as `getattr(module, "has_bias", False)`, the device type) and a few
expressions the harness's inputs decide (the oracle's routing-shape branch). Then it drops what that made
dead: `if` branches not taken, assignments of constants (their uses get the value), statements after a
`return`, docstrings, imports (they go to the script's one import block), calls of functions that became
`pass`. Outside the code under test it also drops assignments nothing reads, writes single-use pure
temporaries at their use and one-expression helpers of the same module at their call. Statements it did not
change keep their text (and trailing comments); changed ones are written back with `ast.unparse`.
"""

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


class Specialiser:
    """Specialises function and class definitions under `facts`; the lookups (callees, noops, returns, globals,
    unfoldable) are the script's, so call sites see what their callees became."""

    def __init__(self, facts: Facts):
        self.facts = facts
        self.callees: Any = {}  # name -> its original definition (call sites drop the arguments it lost)
        self.noops: Any = set()  # functions that became `pass`: their calls go
        self.returns: Any = {}  # name -> the values of the tuple it returns (UNKNOWN where not fixed)
        self.globals: Any = {}  # name -> the value of a module-level constant the code reads
        self.unfoldable: Any = {}  # name -> a specialised one-expression helper, whose calls become its body
        self.hoisted: list[ast.stmt] = []  # imports found inside functions

    # ---- definitions ------------------------------------------------------------------------------
    def function(self, node: ast.FunctionDef, owner: str | None = None) -> ast.FunctionDef:
        """`node` specialised (a new tree; every statement remembers its original in `_orig`)."""
        name = node.name if owner is None else f"{owner}.{node.name}"
        removed = self.facts.removed(name, signature(node))
        keep: set[str] = set()  # constants some use still needs by name: their assignment stays
        while True:
            new, local = self._function(node, owner, name, removed, keep)
            left = {n.id for n in ast.walk(new) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
                    and n.id in local} - keep
            if not left:
                return new
            fixed = left & set(removed)
            if fixed:
                raise ValueError(f"{name}: parameter(s) {sorted(fixed)} fixed by the cell but still used as a whole")
            keep |= left

    def _function(self, node, owner, name, removed, keep):
        new = _copy_with_orig(node)
        env = {param: self.facts.value(name, param) for param in removed}
        _drop_params(new, set(removed))
        attrs = {**self.facts.attrs, **self.facts.class_attrs.get(owner or "", {})}
        exprs = self.facts.exprs.get(name, {})
        local: dict[str, Any] = dict(env)
        for _ in range(8):  # to a fixed point: folding an `if` can make a name single-assigned
            before = ast.dump(new)
            local = {**local, **env, **_constant_locals(new, env, attrs, exprs, self)}
            folder = _Folder(local, attrs, exprs, self, shadow=set(signature(new)) - set(local), keep=keep)
            folder.local_names = _locals(new)
            folder.fixed = set(removed)
            new.body = folder.block(new.body, top=True)
            if self.facts.dead_code:
                new.body = _drop_dead(new, _drop_overwritten(new.body))
                new.body = _inline_temporaries(new, new.body)
            if ast.dump(new) == before:
                break
        new.body = _strip_docstring(new.body) or [_pass(new)]
        return new, local

    def klass(self, node: ast.ClassDef, drop: tuple[str, ...] = ()) -> ast.ClassDef:
        """`node` with each method specialised, docstring and the methods in `drop` left out."""
        new = copy.copy(node)
        new._orig = node
        body = []
        for stmt in _strip_docstring(node.body):
            if isinstance(stmt, ast.FunctionDef):
                if stmt.name not in drop:
                    body.append(self.function(stmt, owner=node.name))
            else:
                body.append(_copy_with_orig(stmt))
        new.body = body or [_pass(new)]
        return new


class _Folder(ast.NodeTransformer):
    """One pass over a function body: constants substituted and folded, dead branches dropped."""

    def __init__(self, env, attrs, exprs, owner: Specialiser, shadow: set[str], keep: set[str] = frozenset()):
        self.env = env  # local/param name -> value
        self.keep = keep  # names whose assignment stays
        self.local_names: set[str] = set()  # every name the function binds (not a module-level constant)
        self.fixed: set[str] = set()  # parameters the cell fixes: gone from the signature, so always substituted
        self.attrs = attrs
        self.exprs = exprs
        self.owner = owner
        self.shadow = [shadow]  # names bound in an inner scope (lambda / nested def parameters)

    # ---- values -----------------------------------------------------------------------------------
    def known(self, name: str) -> Any:
        if any(name in scope for scope in self.shadow[1:]):
            return UNKNOWN
        return self.env.get(name, UNKNOWN)

    def value(self, node: ast.AST) -> Any:
        """The value of expression `node` when the facts decide it, else UNKNOWN."""
        if self.exprs:
            text = ast.unparse(node)
            if text in self.exprs:
                return self.exprs[text]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            value = self.known(node.id)
            if value is UNKNOWN and node.id not in self.local_names:
                value = self.owner.globals.get(node.id, UNKNOWN)  # a module-level constant (never written bare)
            return value
        if isinstance(node, (ast.Tuple, ast.List)):
            items = [self.value(item) for item in node.elts]
            if any(item is UNKNOWN for item in items) or any(isinstance(e, ast.Starred) for e in node.elts):
                return UNKNOWN
            return tuple(items) if isinstance(node, ast.Tuple) else items
        if isinstance(node, ast.Dict):
            if None in node.keys:
                return UNKNOWN
            keys, values = [self.value(k) for k in node.keys], [self.value(v) for v in node.values]
            if UNKNOWN in keys or any(v is UNKNOWN for v in values):
                return UNKNOWN
            return dict(zip(keys, values))
        if isinstance(node, ast.Subscript):
            base, index = self.value(node.value), self.value(node.slice)
            if base is UNKNOWN or index is UNKNOWN:
                return UNKNOWN
            try:
                return base[index]
            except (KeyError, IndexError, TypeError):
                return UNKNOWN
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            facts = self.attrs.get(node.value.id)
            if facts is not None and node.attr in facts and self.known(node.value.id) is UNKNOWN \
                    and not any(node.value.id in scope for scope in self.shadow[1:]):
                return facts[node.attr]
            return UNKNOWN
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "getattr" and len(node.args) in (2, 3) and not node.keywords \
                    and isinstance(node.args[0], ast.Name) and isinstance(node.args[1], ast.Constant):
                facts = self.attrs.get(node.args[0].id) or {}
                return facts.get(node.args[1].value, UNKNOWN)
            fn = _FOLDABLE_CALLS.get(node.func.id)
            if fn is not None and len(node.args) == 1 and not node.keywords and node.func.id not in self.env:
                arg = self.value(node.args[0])
                return UNKNOWN if arg is UNKNOWN else fn(arg)
            return UNKNOWN
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            operand = self.value(node.operand)
            return UNKNOWN if operand is UNKNOWN else not operand
        if isinstance(node, ast.BoolOp):
            return self._boolop(node)
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            left, right = self.value(node.left), self.value(node.comparators[0])
            if left is UNKNOWN or right is UNKNOWN:
                return UNKNOWN
            return _compare(node.ops[0], left, right)
        if isinstance(node, ast.IfExp):
            test = self.value(node.test)
            return UNKNOWN if test is UNKNOWN else self.value(node.body if test else node.orelse)
        return UNKNOWN

    def _boolop(self, node: ast.BoolOp) -> Any:
        is_and = isinstance(node.op, ast.And)
        result: Any = None
        for item in node.values:
            value = self.value(item)
            if value is UNKNOWN:
                return UNKNOWN
            result = value
            if bool(value) != is_and:  # `and` stops at a falsy value, `or` at a truthy one
                return value
        return result

    # ---- expressions ------------------------------------------------------------------------------
    def _fold(self, node: ast.expr) -> ast.expr | None:
        """A literal for `node` when its value is known and worth writing, else None."""
        if isinstance(node, ast.Constant):
            return None
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            value = self.known(node.id)
            if value is UNKNOWN or (len(repr(value)) > _SMALL and node.id not in self.fixed):
                return None  # a big value keeps its name (and assignment), unless it was a parameter
        elif isinstance(node, (ast.Tuple, ast.List, ast.Dict)):
            return None  # already literal where it can be; its items fold one by one
        value = self.value(node)
        if value is UNKNOWN:
            return None
        return literal(value)

    def visit_Name(self, node):
        return (self._fold(node) or node) if isinstance(node.ctx, ast.Load) else node

    def _expression(self, node):
        folded = self._fold(node) if isinstance(getattr(node, "ctx", ast.Load()), ast.Load) else None
        if folded is not None:
            return ast.copy_location(folded, node)
        return self.generic_visit(node)

    visit_Subscript = visit_Attribute = visit_Compare = visit_UnaryOp = _expression

    def visit_BoolOp(self, node):
        folded = self._fold(node)
        if folded is not None:
            return ast.copy_location(folded, node)
        node = self.generic_visit(node)
        is_and = isinstance(node.op, ast.And)
        # `True and x` -> `x`; `False or x` -> `x` (only operands that cannot decide the result go)
        values = [v for v in node.values[:-1] if not (isinstance(v, ast.Constant) and bool(v.value) == is_and)]
        values.append(node.values[-1])
        if len(values) == 1:
            return values[0]
        node.values = values
        return node

    def visit_IfExp(self, node):
        test = self.truth(node.test)
        if test is not UNKNOWN:
            return self.visit(node.body if test else node.orelse)
        return self._expression(node)

    def visit_Call(self, node):
        folded = self._fold(node)
        if folded is not None:
            return ast.copy_location(folded, node)
        node = self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id == "getattr" and len(node.args) == 2 \
                and not node.keywords and isinstance(node.args[1], ast.Constant) \
                and isinstance(node.args[1].value, str) and node.args[1].value.isidentifier() \
                and not node.args[1].value.startswith("__") and "getattr" not in self.local_names:
            return ast.copy_location(ast.Attribute(node.args[0], node.args[1].value, ast.Load()), node)
        return self.owner_call(node)

    def _unfold(self, node: ast.Call) -> ast.expr | None:
        """The body of a one-expression helper (`t = a(x); return b(t)`) in place of its call, arguments being
        names or constants (`_float64(module, "down_proj", device, True)` -> `getattr(module, ...).to(...)`)."""
        callee = self.owner.unfoldable.get(node.func.id)
        if callee is None or any(isinstance(a, ast.Starred) for a in node.args) \
                or any(k.arg is None for k in node.keywords) \
                or not all(isinstance(a, (ast.Name, ast.Constant))
                           for a in node.args + [k.value for k in node.keywords]):
            return None
        params = signature(callee)
        args = callee.args
        defaults = dict(zip([a.arg for a in args.args][len(args.args) - len(args.defaults):], args.defaults))
        defaults.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None})
        bound = dict(zip(params, node.args)) | {k.arg: k.value for k in node.keywords}
        if len(node.args) > len(params) or any(p not in bound and p not in defaults for p in params):
            return None
        values = {p: bound.get(p, defaults.get(p)) for p in params}
        if not all(isinstance(v, (ast.Name, ast.Constant)) for v in values.values()):
            return None
        *temps, ret = callee.body
        own = {n.id for stmt in callee.body for n in ast.walk(stmt) if isinstance(n, ast.Name)} - set(params) \
            - {t.targets[0].id for t in temps}
        if own & (self.local_names | set(self.env)):
            return None  # a name of the helper's that the caller binds otherwise
        plain = _Folder({}, {}, {}, self.owner, shadow=set())
        expr = plain.visit(_substitute(ret.value, values))
        for temp in reversed(temps):
            name = temp.targets[0].id
            if len([n for n in ast.walk(expr) if isinstance(n, ast.Name) and n.id == name]) != 1:
                return None
            expr = _substitute(expr, {name: plain.visit(_substitute(temp.value, values))})
        return expr

    def owner_call(self, node: ast.Call) -> ast.Call:
        """Drop the arguments of parameters the callee lost; spell out `**{...}` literals as keywords."""
        keywords = []
        for keyword in node.keywords:
            if keyword.arg is None and isinstance(keyword.value, ast.Dict) and None not in keyword.value.keys \
                    and all(isinstance(k, ast.Constant) and isinstance(k.value, str) for k in keyword.value.keys):
                keywords += [ast.keyword(arg=k.value, value=v)
                             for k, v in zip(keyword.value.keys, keyword.value.values)]
            else:
                keywords.append(keyword)
        node.keywords = keywords
        callee = self.owner.callees.get(node.func.id) if isinstance(node.func, ast.Name) else None
        if callee is None or getattr(node, "_rewritten", False):
            return node
        node._rewritten = True  # passes repeat: drop the fixed arguments once
        if isinstance(callee, ast.ClassDef):
            init = next((s for s in callee.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None)
            if init is None:
                return node
            params, name = signature(init)[1:], f"{callee.name}.__init__"
        else:
            params, name = signature(callee), callee.name
        removed = set(self.owner.facts.removed(name, params))
        if removed:
            positional = [a for i, a in enumerate(node.args) if i >= len(params) or params[i] not in removed]
            if len(positional) != len(node.args) and any(isinstance(a, ast.Starred) for a in node.args):
                raise ValueError(f"cannot drop fixed arguments from a *args call of {callee.name}")
            node.args = positional
            node.keywords = [k for k in node.keywords if k.arg not in removed]
        return node

    def visit_Lambda(self, node):
        self.shadow.append({a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs})
        try:
            return self.generic_visit(node)
        finally:
            self.shadow.pop()

    def visit_ListComp(self, node):
        self.shadow.append({n.id for gen in node.generators for n in ast.walk(gen.target) if isinstance(n, ast.Name)})
        try:
            return self.generic_visit(node)
        finally:
            self.shadow.pop()

    visit_SetComp = visit_GeneratorExp = visit_DictComp = visit_ListComp

    # ---- statements -------------------------------------------------------------------------------
    def block(self, stmts: list[ast.stmt], top: bool = False) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for stmt in stmts:
            result = self.visit(stmt)
            if result is None:
                continue
            out += result if isinstance(result, list) else [result]
            if isinstance(out[-1], (ast.Return, ast.Raise, ast.Continue, ast.Break)):
                break  # the rest of the block never runs
        return out

    def generic_visit(self, node):
        for name, value in ast.iter_fields(node):
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                new = self.block(value)
                if not new and name in ("body",) and not isinstance(node, ast.Module):
                    new = [_pass(node)]
                setattr(node, name, new)
            elif isinstance(value, list):
                items = []
                for item in value:
                    if isinstance(item, ast.AST):
                        item = self.visit(item)
                        if item is None:
                            continue
                    items.append(item)
                setattr(node, name, items)
            elif isinstance(value, ast.AST):
                setattr(node, name, self.visit(value))
        return node

    def truth(self, node: ast.expr) -> Any:
        """Whether test `node` holds, where the facts decide it (`x in y and False` does not hold)."""
        value = self.value(node)
        if value is not UNKNOWN:
            return bool(value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self.truth(node.operand)
            return UNKNOWN if inner is UNKNOWN else not inner
        if isinstance(node, ast.BoolOp) and all(_pure(item) for item in node.values):
            decisive = isinstance(node.op, ast.Or)  # `or` holds once one item holds; `and` fails once one fails
            truths = [self.truth(item) for item in node.values]
            if decisive in truths:
                return decisive
            if all(t is not UNKNOWN for t in truths):
                return not decisive
        return UNKNOWN

    def visit_If(self, node):
        test = self.truth(node.test)
        if test is UNKNOWN:
            node = self.generic_visit(node)
            if all(isinstance(s, ast.Pass) for s in node.body) and not node.orelse:
                return None if _pure(node.test) else node
            return node
        return self.block(node.body if test else node.orelse) or None

    def visit_Assign(self, node):
        names = _target_names(node.targets)
        if names and all(name in self.env and name not in self.keep for name in names):
            return None  # a constant: its uses have the value
        target, value = node.targets[0], node.value
        if len(node.targets) == 1 and isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) \
                and len(target.elts) == len(value.elts) and names:
            pairs = [(t, v) for t, v in zip(target.elts, value.elts)
                     if not (t.id in self.env and t.id not in self.keep)]
            if len(pairs) < len(target.elts):  # `cell, shape = ...` with `cell` folded away: `shape = ...`
                node.targets = [pairs[0][0] if len(pairs) == 1 else ast.Tuple([t for t, _ in pairs], ast.Store())]
                node.value = pairs[0][1] if len(pairs) == 1 else ast.Tuple([v for _, v in pairs], ast.Load())
        node = self.generic_visit(node)
        call = node.value
        if self.owner.facts.dead_code and isinstance(call, ast.Call) and isinstance(call.func, ast.Name):
            inlined = self._unfold(call)  # `w = helper(a, b)` -> `w = <helper's expression>`
            if inlined is not None:
                node.value = ast.copy_location(inlined, call)
        return node

    def visit_Try(self, node):
        node = self.generic_visit(node)
        if all(isinstance(stmt, ast.Pass) for stmt in node.body):  # its imports went to the top: nothing can raise
            return (node.orelse + node.finalbody) or None
        return node

    def visit_Expr(self, node):
        call = node.value
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in self.owner.noops \
                and all(_pure(arg) for arg in call.args):
            return None
        return self.generic_visit(node)

    def visit_Import(self, node):
        self.owner.hoisted.append(node)
        return None

    visit_ImportFrom = visit_Import

    def visit_FunctionDef(self, node):
        params = set(signature(node))
        self.shadow.append(params | {n.id for n in ast.walk(node) if isinstance(n, ast.Name)
                                     and isinstance(n.ctx, ast.Store)})
        try:
            node.body = _strip_docstring(self.block(node.body)) or [_pass(node)]
            node.args = self.visit(node.args)
            node.decorator_list = [self.visit(d) for d in node.decorator_list]
            return node
        finally:
            self.shadow.pop()


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
