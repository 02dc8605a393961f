"""pytest plugin: matrix.yaml collects into one item per cell; the controller writes results.json live."""

from __future__ import annotations

import json
import os
import shlex
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from harness.cells import Cell, Expectation, expand_cells, expectation_for
from harness.errors import HarnessError
from harness.executor import Executor
from harness.matrix import Matrix, load_matrix
from harness.results import ResultsWriter
from harness.verdict import Status, Verdict, judge

_EXECUTOR: Executor | None = None
_CUDA_AVAILABLE: bool | None = None


class CellExpectedFailure(Exception):
    """Raised for a cell that failed the way its expectation says (reported as xfailed)."""


class CellRegression(Exception):
    """Raised for a cell whose result contradicts its expectation (reported as failed)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options of the compile matrix; `python -m harness run` sets them for you."""
    group = parser.getgroup("compile-matrix")
    group.addoption("--matrix", default=None, help="matrix file to collect cells from")
    group.addoption("--matrix-out", default="reports/latest", help="folder for results.json and logs")
    group.addoption("--matrix-source", action="append", default=[], help="only cells of this source")
    group.addoption("--matrix-device", action="append", default=[], help="only cells on this device")
    group.addoption("--matrix-cell", action="append", default=[], help="only the cell with this exact id")
    group.addoption("--matrix-shard", default=None, help="I/N: only every N-th selected cell, from the I-th")
    group.addoption("--matrix-strict", action="store_true", help="unexpected passes fail the run")
    group.addoption("--matrix-argv", default="", help="the harness command line, stored in results.json")


def pytest_configure(config: pytest.Config) -> None:
    """On the controller, open results.json before any cell runs."""
    if not config.getoption("--matrix") or hasattr(config, "workerinput"):
        return
    from harness import environment

    meta = {"matrix": config.getoption("--matrix"), "argv": config.getoption("--matrix-argv"),
            "shard": config.getoption("--matrix-shard"),
            "harness": _harness_version()}
    devices = tuple(config.getoption("--matrix-device")) or ("cpu", "cuda")
    config.stash[_WRITER] = ResultsWriter(config.getoption("--matrix-out"), environment.collect(devices), meta)


_WRITER = pytest.StashKey[ResultsWriter]()


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    """Collect the configured matrix file as a MatrixFile."""
    matrix = parent.config.getoption("--matrix")
    if matrix and file_path.resolve() == Path(matrix).resolve():
        return MatrixFile.from_parent(parent, path=file_path)
    return None


class MatrixFile(pytest.File):
    """A matrix.yaml: one CellItem per selected cell."""

    def collect(self):
        """Expand the matrix, apply --matrix-source/--matrix-device/--matrix-cell, attach expectations."""
        try:
            matrix = load_matrix(str(self.path), import_backends=False)
        except HarnessError as exc:
            raise self.CollectError(exc.render()) from None
        opt = self.config.getoption
        sources, devices, wanted = set(opt("--matrix-source")), set(opt("--matrix-device")), opt("--matrix-cell")
        strict = opt("--matrix-strict")
        selected = [cell for cell in expand_cells(matrix)
                    if (not sources or cell.source in sources) and (not devices or cell.device in devices)
                    and (not wanted or cell.id in wanted)]
        if opt("--matrix-shard"):
            index, count = (int(part) for part in opt("--matrix-shard").split("/"))
            selected = selected[index - 1::count]
        for cell in selected:
            expected = expectation_for(cell, matrix.rules)
            item = CellItem.from_parent(self, name=cell.id, cell=cell, expected=expected, matrix=matrix)
            for keyword in (cell.source, cell.backend, cell.mode, cell.dtype, cell.device, cell.shape, cell.layout,
                            cell.scope, cell.phase):
                item.extra_keyword_matches.add(keyword)
            if expected.expect in ("fail", "observe"):
                item.add_marker(pytest.mark.xfail(reason=expected.reason, strict=strict and expected.expect == "fail",
                                                   raises=CellExpectedFailure))
            yield item


class CellItem(pytest.Item):
    """One cell of the matrix, run in the executor process of this worker."""

    def __init__(self, *, cell: Cell, expected: Expectation, matrix: Matrix, **kwargs):
        super().__init__(**kwargs)
        self.cell, self.expected, self.matrix = cell, expected, matrix

    def runtest(self) -> None:
        """Run the cell, attach its record for the controller, and map the verdict onto pytest outcomes."""
        started = time.monotonic()
        if self.cell.device == "cuda" and not _cuda_available():
            outcome = {"status": "skipped", "signals": {},
                       "error": {"type": "NotApplicable", "message": "no CUDA device on this machine",
                                 "phase": "selection"}}
        else:
            outcome = _executor(self.config).run(self._spec(), self.matrix.time_limit_s)
        status = Status(outcome["status"])
        error = outcome.get("error")
        error_text = "" if not error else f"{error.get('type', '')}: {error.get('detail') or error.get('message', '')}"
        judgement = judge(self.expected, status, error_text)
        record = {
            "id": self.cell.id, **self.cell.axis_values(), "status": status.value,
            "expected": self.expected.to_json(), "verdict": judgement.verdict.value,
            "verdict_reason": judgement.reason, "error": error, "signals": outcome.get("signals", {}),
            "duration_s": round(time.monotonic() - started, 3), "repro": self.repro_command(),
        }
        self.user_properties.append(("cell", json.dumps(record, default=str)))
        message = _failure_text(record)
        if judgement.verdict is Verdict.NOT_APPLICABLE:
            pytest.skip(f"not applicable: {error['message'] if error else 'not run'}")
        if judgement.verdict is Verdict.REGRESSION:
            raise CellRegression(message)
        if judgement.verdict is Verdict.OK and status is not Status.PASS:
            raise CellExpectedFailure(message)

    def repr_failure(self, excinfo, style=None):
        """Show the cell's status, error and repro command instead of a harness traceback."""
        if isinstance(excinfo.value, (CellRegression, CellExpectedFailure)):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        """Location shown by pytest: the matrix file and the cell id."""
        return self.path, None, f"cell {self.name}"

    def repro_command(self) -> str:
        """One command that reruns only this cell."""
        return " ".join(["python", "-m", "harness", "run", "--matrix", shlex.quote(str(self.path)),
                         "--cell", shlex.quote(self.cell.id)])

    def _spec(self) -> dict[str, Any]:
        backend = self.matrix.backends[self.cell.backend]
        shape = self.matrix.shapes[self.cell.shape]
        return {
            "cell": self.cell.axis_values(), "impl": backend.impl,
            "shape": {"tokens": list(shape.tokens), "hidden": shape.hidden, "intermediate": shape.intermediate,
                      "experts": shape.experts, "top_k": shape.top_k, "routing": shape.routing},
            "tolerance": self.matrix.tolerances.get(self.cell.dtype, 1e-2),
            "max_recompiles": self.matrix.max_recompiles,
            # Seed from the id, so a cell sees the same inputs in every run and on every worker.
            "seed": zlib.crc32(self.cell.id.encode()) % 100_000,
        }


def _failure_text(record: dict[str, Any]) -> str:
    error = record.get("error") or {}
    lines = [f"{record['status']}: {record['verdict_reason']}"]
    if error:
        lines.append(f"  error: {error.get('type')}: {error.get('message')}")
        if error.get("cause"):
            lines.append(f"  cause: {error['cause']}")
    lines.append(f"  repro: {record['repro']}")
    return "\n".join(lines)


def _cuda_available() -> bool:
    global _CUDA_AVAILABLE
    if _CUDA_AVAILABLE is None:
        from harness.environment import cuda_available

        _CUDA_AVAILABLE = cuda_available()
    return _CUDA_AVAILABLE


def _executor(config: pytest.Config) -> Executor:
    global _EXECUTOR
    if _EXECUTOR is None:
        workerinput = getattr(config, "workerinput", None)
        name = workerinput["workerid"] if workerinput else "main"
        workers = int(workerinput["workercount"]) if workerinput else 1
        threads = max(1, (os.cpu_count() or 1) // workers)
        _EXECUTOR = Executor(os.path.join(config.getoption("--matrix-out"), "logs"), name, threads)
    return _EXECUTOR


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """On the controller, persist each finished cell (reports from xdist workers arrive here too)."""
    writer = _writer(report)
    if writer is None:
        return
    for name, value in report.user_properties:
        if name == "cell":
            writer.add(json.loads(value))


_CONFIG: pytest.Config | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Remember the config so report hooks can reach the results writer."""
    global _CONFIG
    _CONFIG = session.config


def _writer(_report=None) -> ResultsWriter | None:
    if _CONFIG is None:
        return None
    return _CONFIG.stash.get(_WRITER, None)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Close the executor; on the controller mark results.json complete (or interrupted)."""
    global _EXECUTOR
    if _EXECUTOR is not None:
        _EXECUTOR.close()
        _EXECUTOR = None
    writer = session.config.stash.get(_WRITER, None)
    if writer is not None:
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED or bool(session.shouldstop)
        writer.write(complete=not interrupted and exitstatus in (0, 1), interrupted=interrupted)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Counts per status and verdict, then one line per regression, unexpected pass and degraded pass."""
    writer = config.stash.get(_WRITER, None)
    if writer is None:
        return
    from harness.summary import summary_lines

    terminalreporter.section("compile matrix")
    for line in summary_lines(list(writer.cells.values()), writer.path):
        terminalreporter.write_line(line)


def _harness_version() -> str:
    from harness import __version__

    return __version__
