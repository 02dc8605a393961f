"""pytest plugin: matrix.yaml collects into one item per cell; the controller writes results.json live."""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path
from typing import Any

import pytest

from harness.cells.cell import Cell, Expectation, expand_cells, expectation_for, run_order
from harness.cells.spec import CellSpec
from harness.errors import HarnessError
from harness.running.executor import Executor
from harness.config.matrix import Matrix
from harness.config.load import load_matrix
from harness.results.results_json import ResultsWriter
from harness.results.record import CellRecord
from harness.results.verdict import Status, Verdict

_EXECUTOR: Executor | None = None
_UNKNOWN = object()
_CUDA_CAPABILITY: Any = _UNKNOWN


class CellExpectedFailure(Exception):
    """Raised for a cell that failed the way its expectation says (reported as xfailed)."""


class CellRegression(Exception):
    """Raised for a cell whose result contradicts its expectation (reported as failed)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options of the compile matrix; `python -m harness run` sets them for you."""
    group = parser.getgroup("compile-matrix")
    group.addoption("--matrix", default=None, help="matrix file to collect cells from")
    group.addoption("--matrix-out", default="reports/latest", help="folder for results.json and logs")
    group.addoption("--matrix-select", default=None,
                    help="selection file written by `python -m harness run`: the cells to run, the records to "
                         "keep or record as not run (default: every cell of the matrix)")
    group.addoption("--matrix-repeat", type=int, default=1, help="run every cell N times; varying status = flaky")
    group.addoption("--matrix-strict", action="store_true", help="unexpected passes fail the run")
    group.addoption("--matrix-argv", default="", help="the harness command line, stored in results.json")
    group.addoption("--matrix-cuda", default=None, metavar="none|MAJOR.MINOR",
                    help="this machine's CUDA compute capability, as the caller detected it (spares workers "
                         "importing torch); detected when not given")


def pytest_configure(config: pytest.Config) -> None:
    """On the controller, prepare results.json (written once the first cell finishes)."""
    if not config.getoption("--matrix") or hasattr(config, "workerinput"):
        return
    selection = _selection(config) or {}
    environment = selection.get("environment")
    if environment is None:
        from harness.environment import machine as env_module

        environment = env_module.collect()
    meta = {"matrix": config.getoption("--matrix"), "argv": config.getoption("--matrix-argv"),
            "shard": selection.get("shard"), "harness": _harness_version()}
    writer = ResultsWriter(config.getoption("--matrix-out"), environment, meta)
    for record in selection.get("kept", []) + selection.get("not_run", []):
        writer.add(record, persist=False)
    config.stash[_WRITER] = writer


_SELECTION: tuple[str, dict[str, Any]] | None = None  # (path, content), read once per process


def _selection(config: pytest.Config) -> dict[str, Any] | None:
    """The selection file of `python -m harness run` (None when pytest runs the plugin directly)."""
    global _SELECTION
    path = config.getoption("--matrix-select")
    if not path:
        return None
    if _SELECTION is None or _SELECTION[0] != path:
        from harness.cells.selection import read_selection

        try:
            _SELECTION = (path, read_selection(path))
        except (OSError, ValueError) as exc:
            raise pytest.UsageError(f"--matrix-select: cannot read {path}: {exc}") from None
    return _SELECTION[1]


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
        """Expand the matrix, keep the cells of the selection file (every cell without one), attach expectations."""
        try:
            matrix = load_matrix(str(self.path), import_backends=False)
        except HarnessError as exc:
            raise self.CollectError(exc.render()) from None
        strict = self.config.getoption("--matrix-strict")
        selection = _selection(self.config)
        selected = expand_cells(matrix)
        if selection is not None:
            wanted = set(selection["run"])
            selected = [cell for cell in selected if cell.id in wanted]
        for cell in run_order(matrix, selected):
            expected = expectation_for(cell, matrix.rules, _cuda_capability())
            # -k matches the cell id only (`python -m harness run` applies it before pytest starts): an axis value
            # the id leaves out, such as the usual layout `default`, is no keyword, so `-k default` is the mode.
            item = CellItem.from_parent(self, name=cell.id, cell=cell, expected=expected, matrix=matrix)
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
            outcome = self._run_repeated()
        cell_record = CellRecord.measured(self.cell, self.expected, outcome, time.monotonic() - started,
                                          self.repro_command())
        record, judgement, error = cell_record.to_json(), cell_record.judgement, cell_record.error
        self.user_properties.append(("cell", json.dumps(record, default=str)))
        message = failure_text(record)
        if judgement.verdict is Verdict.NOT_APPLICABLE:
            pytest.skip(f"not applicable: {error['message'] if error else 'not run'}")
        if judgement.verdict in (Verdict.REGRESSION, Verdict.FLAKY):
            raise CellRegression(message)
        if judgement.verdict is Verdict.OK and cell_record.status is not Status.PASS:
            raise CellExpectedFailure(message)

    def _run_repeated(self) -> dict[str, Any]:
        """Run the cell --matrix-repeat times; if the status varies, return a failing run, all statuses noted."""
        executor = _executor(self.config, self.matrix.memory_limit_gb)
        spec = self._spec()
        outcomes = [executor.run(spec, self.matrix.time_limit_s)
                    for _ in range(self.config.getoption("--matrix-repeat"))]
        statuses = [outcome["status"] for outcome in outcomes]
        chosen = next((o for o in outcomes if o["status"] != "pass"), outcomes[0])
        if len(outcomes) > 1:
            chosen.setdefault("signals", {})["repeat_statuses"] = statuses
        return chosen

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
        return repro_command(str(self.path), self.cell.id)

    def _spec(self) -> dict[str, Any]:
        return CellSpec.of(self.matrix, self.cell).to_json()


def repro_command(matrix_path: str, cell_id: str) -> str:
    """One command that reruns only this cell (the matrix path portable: relative to the checkout, no absolute path)."""
    from harness.portable import portable_path

    return " ".join(["python", "-m", "harness", "run", "--matrix", shlex.quote(portable_path(matrix_path)),
                     "--cell", shlex.quote(cell_id)])


def failure_text(record: dict[str, Any]) -> str:
    error = record.get("error") or {}
    lines = [f"{record['status']}: {record['verdict_reason']}"]
    if error:
        from harness.measure.root_cause import describe

        lines.append(f"  error: {describe(error)}")
        if error.get("wrapper"):
            lines.append(f"  raised as: {error.get('type')}: {error['wrapper']}")
    lines.append(f"  repro: {record['repro']}")
    return "\n".join(lines)


def _cuda_capability() -> tuple[int, int] | None:
    """This machine's CUDA compute capability, or None without a GPU."""
    global _CUDA_CAPABILITY
    if _CUDA_CAPABILITY is _UNKNOWN:
        given = _CONFIG.getoption("--matrix-cuda") if _CONFIG is not None else None
        if given is not None:
            from harness.environment.machine import parse_capability

            try:
                _CUDA_CAPABILITY = parse_capability(given)
            except ValueError as exc:
                raise pytest.UsageError(f"--matrix-cuda: {exc}") from None
        else:
            from harness.environment.machine import cuda_capability

            _CUDA_CAPABILITY = cuda_capability()
    return _CUDA_CAPABILITY


def _cuda_available() -> bool:
    return _cuda_capability() is not None


def _executor(config: pytest.Config, memory_limit_gb: float | None = None) -> Executor:
    global _EXECUTOR
    if _EXECUTOR is None:
        workerinput = getattr(config, "workerinput", None)
        name = workerinput["workerid"] if workerinput else "main"
        workers = int(workerinput["workercount"]) if workerinput else 1
        threads = max(1, (os.cpu_count() or 1) // workers)
        # The address-space cap would break CUDA's large virtual reservations: CPU-only machines only.
        capped = None if _cuda_available() else memory_limit_gb
        _EXECUTOR = Executor(os.path.join(config.getoption("--matrix-out"), "logs"), name, threads, capped)
    return _EXECUTOR


def pytest_collection_finish(session: pytest.Session) -> None:
    """Where cells will run (a worker, or -n 0), start the executor now: its torch import overlaps scheduling."""
    cells = [item for item in session.items if isinstance(item, CellItem)]
    if cells and not session.config.option.collectonly:
        _executor(session.config, cells[0].matrix.memory_limit_gb).prestart()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """On the controller, persist each finished cell (reports from xdist workers arrive here too)."""
    writer = _writer(report)
    if writer is None:
        return
    for name, value in report.user_properties:
        if name == "cell":
            writer.add(CellRecord.from_json(json.loads(value), key=f"cell {report.nodeid}"))


_CONFIG: pytest.Config | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Remember the config so report hooks can reach the results writer; print the selection's notes (cuda cells
    deselected without a GPU, what --resume or --last-failed keeps) once, on the controller."""
    global _CONFIG
    _CONFIG = session.config
    notes = (_selection(session.config) or {}).get("notes") or []
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if notes and reporter is not None and not hasattr(session.config, "workerinput"):
        for note in notes:
            reporter.write_line(note)


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
    if writer is not None and writer.finished:  # a run that ran nothing leaves results.json as it was
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED or bool(session.shouldstop)
        base_complete = (_selection(session.config) or {}).get("base_complete", True)
        writer.write(complete=not interrupted and exitstatus in (0, 1) and base_complete, interrupted=interrupted)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Counts per status and verdict, then one line per regression, unexpected pass and degraded pass."""
    writer = config.stash.get(_WRITER, None)
    if writer is None:
        return
    from harness.running.summary import summary_lines

    terminalreporter.section("compile matrix")
    if not writer.finished:
        state = "left as it was" if os.path.exists(writer.path) else "not written"
        terminalreporter.write_line(f"no cell ran: {writer.path} {state}")
        return
    for line in summary_lines(list(writer.cells.values()), writer.path):
        terminalreporter.write_line(line)


def _harness_version() -> str:
    from harness import __version__

    return __version__


def pytest_unconfigure(config: pytest.Config) -> None:
    """Forget the selection file (several in-process runs may reuse one path)."""
    global _SELECTION
    _SELECTION = None


COLLECTION_FAILED = False  # read by `python -m harness run`: pytest reports a collection error as "interrupted"


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """Remember a collection error (xdist forwards the workers' reports to the controller)."""
    global COLLECTION_FAILED
    if report.failed:
        COLLECTION_FAILED = True
