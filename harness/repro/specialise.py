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
from typing import Any

from harness.repro.cleanup import (_copy_with_orig, _drop_dead, _drop_overwritten, _drop_params,
                                   _inline_temporaries, _locals, _pass, _strip_docstring)
from harness.repro.facts import Facts, signature
from harness.repro.constant_locals import _constant_locals
from harness.repro.folder import _Folder


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
