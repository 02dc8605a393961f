"""The AST transformer that folds what a cell fixes: spec lookups, parameters, attributes, constant branches."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Any

from harness.repro.cleanup import _pass, _strip_docstring
from harness.repro.facts import (UNKNOWN, _FOLDABLE_CALLS, _SMALL, _compare, _pure, _substitute, _target_names,
                                 literal, signature)

if TYPE_CHECKING:
    from harness.repro.specialise import Specialiser


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

    def visit_JoinedStr(self, node):
        """A value the cell fixes is written into the f-string's text (`{0.03:g}` -> `0.03`)."""
        node = self.generic_visit(node)
        parts: list[ast.expr] = []
        for part in node.values:
            spec = part.format_spec if isinstance(part, ast.FormattedValue) else None
            if isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Constant) and part.conversion == -1 \
                    and (spec is None or all(isinstance(v, ast.Constant) for v in spec.values)):
                text = "".join(v.value for v in spec.values) if spec is not None else ""
                part = ast.Constant(format(part.value.value, text))
            if isinstance(part, ast.Constant) and parts and isinstance(parts[-1], ast.Constant):
                parts[-1] = ast.Constant(parts[-1].value + part.value)
            else:
                parts.append(part)
        node.values = parts
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
