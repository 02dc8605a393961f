"""Dispatch proof for transformers' experts, as transformers' own tests do it: spy on ALL_EXPERTS_FUNCTIONS.

transformers' test suite wraps the functions of `ALL_EXPERTS_FUNCTIONS._global_mapping` in
`Mock(wraps=...)` and asserts which one a forward called. `spy()` does the same with plain wrappers,
and also records every call of an experts module (forward pre-hooks), so a module whose call reached no
registered function is known to have run its own (eager) forward. Mocks and hooks are not traceable, so
the spy is for uncompiled probe calls; compiled calls are checked with profiler evidence instead.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator


class MisDispatch(RuntimeError):
    """The experts backend that ran is not the one the cell names."""


class DispatchLog:
    """What one spied call did: per experts module (by name), the interface functions its forward called."""

    def __init__(self):
        self.modules: list[str] = []  # experts modules called, in call order
        self.interface: dict[str, list[str]] = {}  # module name -> interface keys its forward called

    def ran(self) -> dict[str, str]:
        """module name -> the implementation that ran: the interface key called, or 'eager' if none was."""
        result = {}
        for name in self.modules:
            keys = self.interface.get(name, [])
            result[name] = "+".join(sorted(set(keys))) if keys else "eager"
        return result


@contextlib.contextmanager
def spy(experts_modules: dict[str, Any]) -> Iterator[DispatchLog]:
    """Record which ExpertsInterface function each experts module's forward calls inside the block."""
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    log = DispatchLog()
    names = {id(module): name for name, module in experts_modules.items()}
    stack: list[str] = []

    def _pre_hook(module, args):
        name = names[id(module)]
        log.modules.append(name)
        stack.append(name)

    def _post_hook(module, args, output):
        if stack:
            stack.pop()

    handles = []
    for module in experts_modules.values():
        handles.append(module.register_forward_pre_hook(_pre_hook))
        handles.append(module.register_forward_hook(_post_hook))
    saved = []
    try:
        for mapping in (ALL_EXPERTS_FUNCTIONS._global_mapping, ALL_EXPERTS_FUNCTIONS._local_mapping):
            for key, fn in list(mapping.items()):
                saved.append((mapping, key, fn))
                mapping[key] = _recording(key, fn, log, stack)
        yield log
    finally:
        for mapping, key, fn in reversed(saved):
            mapping[key] = fn
        for handle in handles:
            handle.remove()


def _recording(key: str, fn, log: DispatchLog, stack: list[str]):
    """`fn` that first notes, for the experts module being called, that interface key `key` ran."""

    def _wrapper(*args, **kwargs):
        owner = stack[-1] if stack else "(no experts module)"
        log.interface.setdefault(owner, []).append(key)
        return fn(*args, **kwargs)

    _wrapper.__wrapped__ = fn
    return _wrapper


def check(log: DispatchLog, expected: dict[str, str], where: str) -> None:
    """Raise MisDispatch unless every expected module ran and ran the expected implementation."""
    ran = log.ran()
    wrong = {name: (want, ran.get(name, "not called")) for name, want in expected.items() if ran.get(name) != want}
    if wrong:
        detail = "; ".join(f"{name}: expected {want}, ran {got}" for name, (want, got) in sorted(wrong.items())[:4])
        raise MisDispatch(f"{where}: {detail}" + (f" (+{len(wrong) - 4} more)" if len(wrong) > 4 else ""))


def experts_modules(model: Any) -> dict[str, Any]:
    """Every module of `model` that dispatches through transformers' experts interface, by qualified name."""
    found = {}
    for name, module in model.named_modules():
        forward = type(module).__dict__.get("forward")
        # use_experts_implementation wraps forward (functools.wraps) and sets these flags in __init__.
        if forward is not None and hasattr(forward, "__wrapped__") and hasattr(module, "has_gate") \
                and hasattr(module, "is_transposed"):
            found[name or type(module).__name__] = module
    return found
