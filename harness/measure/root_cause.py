"""The root cause of a failure: the innermost real error behind Dynamo/inductor's wrappers, and where it happened.

Dynamo reports a failure inside traced code as its own exception (TorchRuntimeError, Unsupported, UserError,
BackendCompilerFailed, InternalTorchDynamoError, inductor's InductorError...) whose first line says what
Dynamo was doing ("RuntimeError when making fake tensor call"), not what went wrong. The real error hangs off
it through `inner_exception`, `__cause__` or `__context__`, and the line of the code under test is in Dynamo's
record of the traced user stack (`real_stack`, `innermost_user_frame_summary`, the "from user code:" section of
the message), since traced code is interpreted by Dynamo and never appears in the Python traceback.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from typing import Any, Iterator

from harness.portable import CHECKOUT, portable_path, portable_text

MAX_DETAIL = 4000
_HARNESS_DIR = os.path.join(CHECKOUT, "harness")
# Top-level packages of the compiler stack and of the test runner: never "the code under test".
_INTERNAL_PACKAGES = {"torch", "torchgen", "functorch", "triton", "sympy", "_pytest", "pytest", "pluggy", "xdist",
                      "execnet"}
_USER_CODE_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<name>\S+)', re.MULTILINE)
# Lines of Dynamo's messages that say nothing about this failure.
_BOILERPLATE = re.compile(r"^\s*(Set TORCHDYNAMO_VERBOSE=1|For more details about this graph break|"
                          r"Developer debug context:\s*$)")


def explain(exc: BaseException) -> dict[str, Any]:
    """{message, where?, wrapper?, detail} of an exception: the root cause first, Dynamo's wrapper kept aside."""
    chain = exception_chain(exc)
    root = root_cause(exc)
    if root is exc:  # nothing unwrapped: the type is in the record's `type`, as before
        fields: dict[str, Any] = {"message": portable_text(_first_line(str(exc)) or type(exc).__name__)}
    else:
        fields = {"message": portable_text(_typed(root, _first_line(str(root)))),
                  "wrapper": portable_text(_first_line(str(exc)) or type(exc).__name__)}
    location = where(exc)
    if location:
        fields["where"] = location
    fields["detail"] = _detail(exc, root, chain, location)
    return fields


def root_cause(exc: BaseException) -> BaseException:
    """The innermost non-wrapper exception behind `exc`; `exc` itself when it wraps nothing real."""
    real = [link for link in exception_chain(exc) if not is_wrapper(link)]
    return real[-1] if real else exc


def exception_chain(exc: BaseException) -> list[BaseException]:
    """`exc`, then what it wraps, outermost first: inner_exception/__cause__, and __context__ out of wrappers."""
    chain, seen = [exc], {id(exc)}
    current = exc
    while True:
        nxt = _wrapped(current)
        if nxt is None or id(nxt) in seen:
            return chain
        chain.append(nxt)
        seen.add(id(nxt))
        current = nxt


def is_wrapper(exc: BaseException) -> bool:
    """True for Dynamo/inductor's exceptions, and for any exception that only repeats the one it was raised from."""
    module = type(exc).__module__
    if module.startswith(("torch._dynamo.", "torch._inductor.exc")) and _wrapped(exc) is not None:
        return True
    inner = _explicit_inner(exc)
    if inner is None:
        return False
    # e.g. Dynamo's `RuntimeError("Dynamo failed to run FX node with fake tensors: ... got RuntimeError('...')")`.
    inner_line = _first_line(str(inner))
    return bool(inner_line) and inner_line[:80] in str(exc)


def where(exc: BaseException) -> str | None:
    """`file:line in function` of the innermost frame of the code under test (else the torch frame that raised)."""
    frames = list(_candidate_frames(exc))
    for filename, lineno, name, _ in frames:
        if _is_code_under_test(filename):
            return f"{portable_path(filename)}:{lineno} in {name}"
    for filename, lineno, name, _ in frames:
        if not _is_harness(filename) and not filename.startswith("<"):
            return f"{portable_path(filename)}:{lineno} in {name}"
    return None


def describe(error: dict[str, Any]) -> str:
    """The one line shown for an error record: `message (where)`, with the type when the message lacks it."""
    text = error.get("message") or ""
    if not error.get("wrapper") and error.get("type"):
        text = f"{error['type']}: {text}" if text else str(error["type"])
    return f"{text} ({error['where']})" if error.get("where") else text


def _wrapped(exc: BaseException) -> BaseException | None:
    inner = _explicit_inner(exc)
    if inner is not None:
        return inner
    context = exc.__context__
    if context is None or not _is_dynamo(exc):
        return None
    # A Dynamo wrapper raised while handling another exception (often `from None`, to keep user tracebacks short):
    # follow it when it is a Dynamo exception too (TorchRuntimeError <- Unsupported) or when the wrapper repeats
    # it (UserError quotes GuardOnDataDependentSymNode); an unrelated exception being handled is not the cause.
    if _is_dynamo(context):
        return context
    line = _first_line(str(context))
    return context if (line[:80] if line else type(context).__name__) in str(exc) else None


def _explicit_inner(exc: BaseException) -> BaseException | None:
    inner = getattr(exc, "inner_exception", None)
    if isinstance(inner, BaseException) and inner is not exc:
        return inner
    return exc.__cause__


def _is_dynamo(exc: BaseException) -> bool:
    return type(exc).__module__.startswith(("torch._dynamo.", "torch._inductor.exc"))


def _candidate_frames(exc: BaseException) -> Iterator[tuple[str, int, str, str | None]]:
    """(file, line, function, source) of every frame the chain knows, innermost exception and frame first.

    Per exception, Dynamo's record of the traced user stack comes before the Python traceback: traced code is
    deeper than the frames that called the compiled function.
    """
    for link in reversed(exception_chain(exc)):
        summary = getattr(link, "innermost_user_frame_summary", None)
        if summary is not None:
            yield summary.filename, summary.lineno, summary.name, summary.line
        for frame in reversed(list(getattr(link, "real_stack", None) or [])):
            yield frame.filename, frame.lineno, frame.name, frame.line
        for match in reversed(list(_USER_CODE_FRAME.finditer(_from_user_code(str(link))))):
            yield match["file"], int(match["line"]), match["name"], None
        for frame in reversed(traceback.extract_tb(link.__traceback__)):
            yield frame.filename, frame.lineno, frame.name, frame.line


def _from_user_code(text: str) -> str:
    """The "from user code:" section of a Dynamo message (its record of the traced stack), else ''."""
    _, found, rest = text.partition("from user code:")
    return rest if found else ""


def _is_harness(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_HARNESS_DIR + os.sep)


def _is_code_under_test(filename: str) -> bool:
    """Frames of transformers, our reference backends, user backends; not torch, the runner, stdlib, generated code."""
    if not filename or filename.startswith("<") or _is_harness(filename):
        return False
    path = os.path.abspath(filename)
    if "torchinductor_" in path or os.path.basename(os.path.dirname(path)).startswith("torchinductor"):
        return False  # inductor's generated modules (its cache folder)
    for name in _INTERNAL_PACKAGES:
        module = sys.modules.get(name)
        folder = os.path.dirname(getattr(module, "__file__", None) or "") if module else ""
        if folder and path.startswith(folder + os.sep):
            return False
    portable = portable_path(path)
    if portable.split("/", 1)[0] in _INTERNAL_PACKAGES:
        return False
    return not _is_stdlib(path)


def _is_stdlib(path: str) -> bool:
    import sysconfig

    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])
    real = os.path.realpath(path)
    return real.startswith(stdlib + os.sep) and "-packages" + os.sep not in real[len(stdlib):]


def _detail(exc: BaseException, root: BaseException, chain: list[BaseException], location: str | None) -> str:
    """Root cause first (first line, where, the traced user stack, rest of its message), then the wrapper's text."""
    first, _, rest = _nonblank(str(root)).partition("\n")  # _nonblank drops Dynamo's boilerplate lines too
    lines = [_typed(root, first)]
    if location:
        lines.append(f"  at {location}")
    user_stack = _user_stack(chain)
    if user_stack:
        lines.append("user code (most recent call last):")
        lines += user_stack
    if rest:
        lines.append(portable_text(rest)[:1200])  # portable first: a cut must not split a path
    if root is not exc:
        lines.append("chain: " + " <- ".join(type(link).__name__ for link in chain))
        wrapper_text = _nonblank(str(exc))
        lines.append(f"wrapped by {type(exc).__module__}.{type(exc).__qualname__}: {wrapper_text}")
    return portable_text("\n".join(lines))[:MAX_DETAIL]


def _user_stack(chain: list[BaseException]) -> list[str]:
    """Dynamo's record of the traced user stack (outermost first), as `  file:line in name` lines."""
    for link in reversed(chain):
        stack = list(getattr(link, "real_stack", None) or [])
        if stack:
            lines = []
            for frame in stack[-6:]:
                lines.append(f"  {portable_path(frame.filename)}:{frame.lineno} in {frame.name}")
                if frame.line:
                    lines.append(f"    {frame.line.strip()}")
            return lines
    return []


def _typed(exc: BaseException, text: str) -> str:
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _nonblank(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.strip() and not _BOILERPLATE.match(line))


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:500]
    return ""
