"""What a cell reveals besides its status: graph breaks, recompiles, CUDA-graph skips, which ops ran."""

from __future__ import annotations

import logging
import re
from typing import Any, Callable

from harness.portable import portable_text

_RECOMPILES_LOGGER = "torch._dynamo.guards.__recompiles"
_CUDAGRAPHS_LOGGER = "torch._inductor.cudagraph_utils.__cudagraphs"
INTERESTING_OP = re.compile(r"grouped_mm|bmm|::mm$|::addmm$|fallback|cudaGraphLaunch")
MAX_REASONS = 10


class _Collect(logging.Handler):
    """Keeps the first line of every record that passes the filter (and the first guard failure, if any)."""

    def __init__(self, needle: str | None = None):
        super().__init__(logging.DEBUG)
        self.needle = needle
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad log record must not fail the cell
            return
        if self.needle is None or self.needle in message:
            self.lines.append(_with_guard_failure(message))


def _with_guard_failure(message: str) -> str:
    """`Recompiling function f in file:line: <first guard failure>`: the line that says why."""
    first = _first_line(message)
    # A recompile record lists the failed guards as "- 0/0: tensor 'x' size mismatch ..." lines.
    failure = next((line.strip()[2:] for line in message.splitlines() if line.strip().startswith("- ")), None)
    return f"{first}: {failure}"[:500] if failure else first


def enable_logs() -> None:
    """Turn on the torch log artifacts the collector listens to (once per executor process)."""
    import torch._logging

    torch._logging.set_logs(recompiles=True, cudagraphs=True)
    for name in (_RECOMPILES_LOGGER, _CUDAGRAPHS_LOGGER):
        logging.getLogger(name).propagate = False  # keep them out of the executor log's noise


class SignalCollector:
    """Context manager that resets dynamo counters and gathers the signals of one cell."""

    def __init__(self, cell: dict[str, Any]):
        self.cell = cell
        self._recompiles = _Collect()
        self._cudagraph_skips = _Collect("skipping cudagraphs")
        self._events: list[str] = []

    def __enter__(self) -> "SignalCollector":
        import torch
        from torch._dynamo.utils import counters

        torch._dynamo.reset()
        counters.clear()
        logging.getLogger(_RECOMPILES_LOGGER).addHandler(self._recompiles)
        logging.getLogger(_CUDAGRAPHS_LOGGER).addHandler(self._cudagraph_skips)
        return self

    def __exit__(self, *exc_info) -> None:
        from torch._dynamo.utils import counters

        logging.getLogger(_RECOMPILES_LOGGER).removeHandler(self._recompiles)
        logging.getLogger(_CUDAGRAPHS_LOGGER).removeHandler(self._cudagraph_skips)
        self._counters = {group: dict(values) for group, values in counters.items()}

    def profile(self, call: Callable[[], Any]) -> tuple[list[str], int]:
        """Run `call` once under the profiler; return the interesting op names seen and the event count."""
        import torch
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU]
        if self.cell["device"] == "cuda":
            activities.append(ProfilerActivity.CUDA)
        with profile(activities=activities) as prof:
            call()
            if self.cell["device"] == "cuda":
                torch.cuda.synchronize()
        names = [event.name for event in prof.events()]
        self._events = names
        return sorted({name for name in names if INTERESTING_OP.search(name)}), len(names)

    def result(self) -> dict[str, Any]:
        """The signals dict stored in results.json."""
        counters = getattr(self, "_counters", {})
        breaks = counters.get("graph_break", {})
        skips = counters.get("inductor", {}).get("cudagraph_skips", 0)
        return {
            "graph_breaks": sum(breaks.values()),
            "graph_break_reasons": sorted({portable_text(_first_line(reason)) for reason in breaks})[:MAX_REASONS],
            "recompiles": len(self._recompiles.lines),
            "recompile_reasons": [portable_text(line) for line in self._recompiles.lines[:MAX_REASONS]],
            "unique_graphs": counters.get("stats", {}).get("unique_graphs", 0),
            "cudagraph_skips": skips,
            "cudagraph_skip_reasons": [portable_text(line) for line in self._cudagraph_skips.lines[:MAX_REASONS]],
            "cudagraph_launches": sum("cudaGraphLaunch" in name for name in self._events),
            "grouped_mm_path": grouped_mm_path(self._events),
        }


def grouped_mm_path(event_names: list[str]) -> str | None:
    """`fallback` if a grouped_mm_fallback op ran, `native` if a native grouped_mm ran, else None."""
    if any("grouped_mm_fallback" in name for name in event_names):
        return "fallback"
    if any("grouped_mm" in name for name in event_names):
        return "native"
    return None


def classify_exception(exc: BaseException, compiling: bool) -> str:
    """compile_error for what dynamo/inductor raise while tracing or compiling, else runtime_error."""
    if not compiling:
        return "runtime_error"
    from torch._dynamo.exc import TorchDynamoException

    # Dynamo wraps every tracing/lowering failure (Unsupported, UserError, BackendCompilerFailed,
    # TorchRuntimeError from fake-tensor propagation); a kernel failing inside a compiled graph is not wrapped.
    return "compile_error" if isinstance(exc, TorchDynamoException) else "runtime_error"


def error_record(exc: BaseException, phase: str) -> dict[str, Any]:
    """{type, message, where?, wrapper?, phase, detail}: the root cause behind Dynamo's wrappers (harness.measure.root_cause).

    `type` is the raised exception's qualified type (Dynamo's wrapper, if any); `message` the root cause's first
    line (`<InnerType>: ...` when unwrapped); `where` the innermost frame of the code under test; `wrapper` the
    wrapper's first line; `detail` the root cause's message, the traced user stack, then the wrapper's text.
    """
    from harness.measure.root_cause import explain

    fields = explain(exc)
    record = {"type": f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins."),
              "message": fields["message"]}
    for key in ("where", "wrapper"):
        if key in fields:
            record[key] = fields[key]
    record["phase"] = phase
    record["detail"] = fields["detail"]
    return record


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:500]
    return ""
