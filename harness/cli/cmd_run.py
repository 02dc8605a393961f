"""`python -m harness run`: validate everything, select the cells, then run them as pytest items (xdist-parallel).

Every mistake (an option, the matrix, a selection that matches nothing, an unreadable results or baseline
file, a place that cannot be written) is one `error:` line and exit 2 before any cell runs; a run that runs
nothing never touches the previous results.json or junit.xml.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from harness.errors import EXIT_INTERRUPTED, EXIT_REGRESSION, EXIT_USAGE, HarnessError
from harness.cli.usage import check_input_file, check_output_dir
from harness.portable import CHECKOUT

_INI = os.path.join(CHECKOUT, "harness", "pytest_matrix.ini")
EXIT_INTERNAL = 3
# The only pytest plugins a matrix run loads (entry-point autoloading is off): xdist, and the harness's own (the
# ini file's addopts). Users add theirs explicitly: `python -m harness run -- -p myplugin`.
_PLUGINS = ["-p", "xdist"]
# pytest's environment variables that would load plugins or add options behind the harness's back.
_HERMETIC_ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTEST_ADDOPTS": None, "PYTEST_PLUGINS": None}
# pytest options after `--` that cannot work in a matrix run, and what to use instead.
_CACHE_HINT = ("pytest's cache is off in matrix runs (results.json is the record): use `python -m harness run "
               "--last-failed` to rerun the failed cells of <out>/results.json, `--resume` to finish an "
               "interrupted run")
_REFUSED_PYTEST_OPTIONS = {
    **{name: _CACHE_HINT for name in ("--lf", "--last-failed", "--ff", "--failed-first", "--nf", "--new-first",
                                      "--sw", "--stepwise", "--sw-skip", "--stepwise-skip", "--sw-reset",
                                      "--stepwise-reset", "--lfnf", "--last-failed-no-failures", "--cache-show",
                                      "--cache-clear")},
    **{name: "the harness writes <out>/junit.xml itself (choose the folder with --out)"
       for name in ("--junitxml", "--junit-xml", "--junit-prefix")},
    **{name: "set by the harness (pytest_matrix.ini, the matrix's folder)"
       for name in ("-c", "--config-file", "--rootdir", "--inifile")},
}


def add_parser(sub) -> None:
    """Register `run` and its options."""
    run = sub.add_parser("run", help="run the compile matrix (pytest items, one per cell)",
                         description="Run the cells of the matrix as pytest items (pytest-xdist in parallel), "
                                     "write <out>/results.json after every cell and <out>/junit.xml at the end.")
    run.add_argument("--matrix", default="matrix.yaml",
                     help="matrix file (default: matrix.yaml of the checkout)")
    run.add_argument("--out", default=os.path.join("reports", "latest"),
                     help="output folder for results.json, junit.xml and logs (default: reports/latest of the "
                          "checkout)")
    run.add_argument("--source", action="append", default=[], help="only this source (repeatable)")
    run.add_argument("--device", action="append", default=[], choices=["cpu", "cuda"],
                     help="only this device (repeatable; default: every device; without a GPU, cuda cells are "
                          "recorded as not run)")
    run.add_argument("--cell", action="append", default=[], help="only the cell with this exact id (repeatable)")
    run.add_argument("-k", dest="keyword", default=None, metavar="EXPR",
                     help="only cells whose id matches EXPR: pytest -k syntax (and, or, not), each word a "
                          "case-insensitive substring of the id, e.g. -k 'grouped_mm and not fullgraph'")
    run.add_argument("-n", dest="workers", default="auto", help="pytest-xdist workers: a number or auto")
    run.add_argument("--shard", default=None, metavar="I/N",
                     help="run only shard I of N (1-based) of the selected cells, for several runners")
    run.add_argument("--repeat", type=int, default=1, metavar="N",
                     help="run every cell N times; a cell whose status varies is reported flaky (exit 1)")
    again = run.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="keep the finished cells of an interrupted run in --out and run only the rest")
    again.add_argument("--lf", "--last-failed", dest="last_failed", action="store_true",
                       help="rerun only the failed cells of <out>/results.json (regression, flaky, crash, timeout; "
                            "with --strict unexpected passes too) and merge them into it")
    run.add_argument("--strict", action="store_true", help="unexpected passes fail the run (exit 1)")
    run.add_argument("--transformers-src", default=None, metavar="PATH",
                     help="test this transformers source tree (the src/ of a checkout, or a folder holding "
                          "transformers/) instead of the installed package")
    run.add_argument("--baseline", default=None, metavar="FILE|auto",
                     help="after the run, diff against this baseline (auto: reports/baselines/<environment>.json); "
                          "new failures, changed failures, fixes and flaky cells exit 1")
    run.add_argument("-q", "--quiet", action="count", default=0, help="less pytest output")
    run.add_argument("-v", "--verbose", action="count", default=0, help="more pytest output")
    run.add_argument("pytest_args", nargs="*", metavar="-- PYTEST_ARGS",
                     help="extra pytest arguments, e.g. -- -x or -- -p myplugin (only xdist and the harness's "
                          "plugin load by themselves)")


def run(args: argparse.Namespace) -> int:
    """Run the selected cells; 0 no regression, 1 regression, 2 bad input, 130 interrupted."""
    from harness.running import forkserver
    from harness.running.executor import executor_env

    _check_usage(args)  # cheap checks first, before anything starts or is written
    if args.transformers_src:
        from harness.environment.transformers_src import ENV_VAR, resolve_src

        # Inherited by xdist workers and their executors (which put it first on PYTHONPATH) and read by
        # environment.py for results.json.
        os.environ[ENV_VAR] = resolve_src(args.transformers_src)
    # The fork server's torch import and warm-up overlap the matrix validation and pytest start-up below.
    server = forkserver.start(executor_env(None), os.path.join(args.out, "logs", "forkserver.log"))
    if server is not None:
        os.environ[forkserver.ENV_VAR] = server[1]  # inherited by the xdist workers
    try:
        return _run(args, args.argv)
    finally:
        forkserver.stop(server)
        if server is not None:
            os.environ.pop(forkserver.ENV_VAR, None)


def _check_usage(args: argparse.Namespace) -> None:
    """Options that need no matrix: numbers, the shard, pytest's arguments, files to read, the place to write."""
    from harness.cells.selection import parse_shard

    if args.repeat < 1:
        raise HarnessError(f"must be >= 1, got {args.repeat}", key="--repeat")
    _workers(args.workers, 2)
    if args.shard:
        parse_shard(args.shard)
    args.pytest_args = _check_pytest_args(args)
    check_input_file(args.matrix, "--matrix")
    if args.baseline not in (None, "auto"):
        from harness.results.baseline import load_cells

        if not os.path.exists(args.baseline):
            raise HarnessError(f"no such baseline file: {args.baseline}", key="--baseline")
        check_input_file(args.baseline, "--baseline")
        load_cells(args.baseline)  # a corrupt baseline is an error now, not after every cell has run
    if args.resume or args.last_failed:
        _previous(args)
    check_output_dir(args.out, "--out")


def _check_pytest_args(args: argparse.Namespace) -> list[str]:
    """Refuse what cannot work after `--`; `-- -k EXPR` joins run's own -k (the selection happens before pytest)."""
    out, extra, words = [], [], list(args.pytest_args)
    while words:
        word = words.pop(0)
        name = word.split("=", 1)[0]
        if name in _REFUSED_PYTEST_OPTIONS:
            raise HarnessError(f"{word}: {_REFUSED_PYTEST_OPTIONS[name]}", key="pytest arguments after --")
        if word == "-k" or (word.startswith("-k") and len(word) > 2 and not word.startswith("--")):
            expression = word[2:] or (words.pop(0) if words else "")
            if not expression:
                raise HarnessError("-k needs an expression", key="pytest arguments after --")
            extra.append(expression)
            continue
        out.append(word)
    if extra:
        expressions = ([args.keyword] if args.keyword else []) + extra
        args.keyword = " and ".join(f"({expression})" for expression in expressions)
    return out


def _previous(args: argparse.Namespace) -> dict[str, Any]:
    """The results.json in --out that --resume or --last-failed continues (read and checked once)."""
    from harness.results.results_json import read_results

    cached = getattr(args, "_previous_doc", None)
    if cached is not None:
        return cached
    path = os.path.join(args.out, "results.json")
    option = "--resume" if args.resume else "--last-failed"
    if not os.path.exists(path):
        what = "nothing to resume" if args.resume else "no earlier run to take the failed cells from"
        raise HarnessError(f"{what}: {path} does not exist (check --out)", key=option)
    args._previous_doc = read_results(path)
    return args._previous_doc


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    from harness.environment import machine as environment
    from harness.cells.cell import expand_cells
    from harness.cells.selection import select
    from harness.config.load import load_matrix

    matrix = load_matrix(args.matrix)
    cells = expand_cells(matrix)
    capability = environment.cuda_capability()  # once here, handed to the workers (they need not import torch)
    env = environment.collect(tuple(args.device) or ("cpu", "cuda"))
    previous = _previous(args) if args.resume or args.last_failed else None
    selection = select(args, cells, capability, env, previous)
    if selection is None:
        return 0
    _check_baseline(args, selection, env)
    not_run = _not_run_records(args, matrix, selection, capability)
    select_file = selection.write(args.out, environment=env, not_run_records=not_run)
    return _run_pytest(args, argv, selection, select_file, capability)


def _not_run_records(args, matrix, selection, capability) -> list[dict[str, Any]]:
    from harness.cells.cell import expectation_for
    from harness.results.record import CellRecord
    from harness.running.plugin import repro_command

    path = os.path.abspath(args.matrix)
    return [CellRecord.not_run(cell, expectation_for(cell, matrix.rules, capability), "no CUDA device on this machine",
                               repro_command(path, cell.id)).to_json() for cell in selection.not_run]


def _check_baseline(args, selection, env) -> None:
    """Load the baseline(s) the run will be compared with now, so that a bad one fails before any cell runs."""
    if not args.baseline:
        return
    from harness.results.baseline import BASELINE_DIR, pick_baseline
    from harness.results.observations import Env
    from harness.cli.usage import checkout_root

    directory = os.path.join(checkout_root(), BASELINE_DIR)
    for device in sorted({cell.device for cell in selection.run}):
        pick_baseline(args.baseline, Env(env["torch"], env.get("transformers"), device,
                                          env.get("compute_capability") if device == "cuda" else None), directory)


def _run_pytest(args, argv, selection, select_file, capability) -> int:
    from harness.running import junit
    from harness.environment.machine import format_capability

    workers = _workers(args.workers, len(selection.run))
    junit_path, aside = os.path.join(args.out, "junit.xml"), os.path.join(args.out, "logs", "junit-previous.xml")
    junit.set_aside(junit_path, aside)
    matrix = os.path.abspath(args.matrix)
    # --noconftest: no conftest.py of the matrix's folder; --assert=plain: cells assert nothing, and the harness's
    # plugin is imported before pytest starts (so it could not be rewritten anyway).
    pytest_args = [matrix, "-c", _INI, "--rootdir", os.path.dirname(matrix), "--noconftest", "--assert=plain",
                   *_PLUGINS,
                   "--matrix", matrix, "--matrix-out", args.out, "--matrix-select", select_file,
                   "--junitxml", junit_path, "--matrix-argv", " ".join(argv),
                   "-n", str(workers), "-rfE", "--matrix-cuda", format_capability(capability),
                   # Each worker takes a contiguous half of the run order and steals from the other's end when done:
                   # cells that compile the same graphs stay on one worker (`--dist load` hands out small chunks
                   # alternately, so two workers built the same kernel at once, one waiting on the other's cache lock).
                   "--dist", "worksteal"]
    if args.strict:
        pytest_args.append("--matrix-strict")
    if args.repeat > 1:
        pytest_args += ["--matrix-repeat", str(args.repeat)]
    pytest_args += ["-q"] * args.quiet + ["-v"] * args.verbose + list(args.pytest_args)
    try:
        code = _pytest_main(pytest_args)
    except BaseException:
        junit.finalize(junit_path, aside, "", strict=args.strict)  # no run: the earlier junit.xml goes back
        raise
    results = os.path.join(args.out, "results.json")
    ran = junit.finalize(junit_path, aside, results, strict=args.strict)
    if ran and code == 0:  # the exit code speaks for every cell of results.json, the kept ones too (--resume)
        failing = ("regression", "flaky") + (("unexpected_pass",) if args.strict else ())
        kept = [cell["id"] for cell in selection.kept if cell["verdict"] in failing]
        if kept:
            print(f"exit 1: {len(kept)} cell(s) kept from the earlier run in {results} failed (listed above)")
            code = EXIT_REGRESSION
    if args.baseline and ran and code in (0, EXIT_REGRESSION):
        from harness.results.baseline import BASELINE_DIR, check_run
        from harness.cli.usage import checkout_root

        lines, gate = check_run(results, args.baseline, os.path.join(checkout_root(), BASELINE_DIR))
        print("\n".join(lines))
        code = EXIT_REGRESSION if gate else code
    return code


def _workers(value: str, cells: int) -> int:
    if value == "auto":
        return max(0, min(os.cpu_count() or 1, cells)) if cells > 1 else 0
    try:
        workers = int(value)
    except ValueError:
        raise HarnessError(f"must be a whole number or 'auto', got {value!r}", key="-n") from None
    if workers < 0:
        raise HarnessError(f"must be >= 0, got {workers}", key="-n")
    return workers


def _pytest_main(pytest_args: list[str]) -> int:
    """pytest.main, hermetic (only the plugins named on the command line) and with one-line usage errors."""
    import pytest

    from harness.running import plugin

    repo_root = CHECKOUT
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [repo_root, os.environ.get("PYTHONPATH")]))
    saved = {name: os.environ.get(name) for name in _HERMETIC_ENV}
    for name, value in _HERMETIC_ENV.items():  # inherited by the xdist workers too
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    plugin.COLLECTION_FAILED = False
    try:
        code = _pytest_session(pytest_args)
    finally:
        signal.signal(signal.SIGTERM, previous)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    if code == pytest.ExitCode.OK:
        return 0
    if code == pytest.ExitCode.TESTS_FAILED:
        return EXIT_REGRESSION
    if code == pytest.ExitCode.INTERRUPTED:
        if plugin.COLLECTION_FAILED:
            print("error: the matrix could not be collected (see the errors above); nothing run", file=sys.stderr)
            return EXIT_USAGE
        return EXIT_INTERRUPTED
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("error: pytest arguments after -- deselected every cell; nothing run", file=sys.stderr)
        return EXIT_USAGE
    if code == pytest.ExitCode.USAGE_ERROR:
        return EXIT_USAGE
    print(f"error: internal error (pytest exit code {int(code)}; see INTERNALERROR above): a bug in the harness or "
          "in a pytest plugin given after --", file=sys.stderr)
    return EXIT_INTERNAL


def _pytest_session(pytest_args: list[str]) -> int:
    """pytest.main's steps, with its usage errors (bad arguments after --) raised as one-line HarnessErrors."""
    import pytest

    try:
        from _pytest.config import _prepareconfig
    except ImportError:  # pragma: no cover - a pytest without it: its own messages
        return pytest.main(pytest_args)
    os.environ["PYTEST_VERSION"] = pytest.__version__
    matrix = pytest_args[0]
    try:
        try:
            config = _prepareconfig(list(pytest_args), None)  # (pytest inserts the ini's addopts into the list)
        except pytest.UsageError as exc:
            raise HarnessError(_one_line(exc), key="pytest arguments after --") from None
        except ImportError as exc:  # a plugin named with -p that does not import
            raise HarnessError(f"cannot load a plugin: {exc}", key="pytest arguments after --") from None
        except Exception as exc:  # noqa: BLE001 - PluginImportFailure, ConftestImportFailure: one line, not a trace
            cause = getattr(exc, "cause", None) or exc.__cause__
            raise HarnessError(f"cannot load a plugin: {exc}" + (f" ({cause!r})" if cause else ""),
                               key="pytest arguments after --") from None
        try:
            paths = [arg for arg in config.args if arg != matrix]
            if paths:  # pytest would collect them in the workers and report "0 items"
                raise HarnessError(f"{' '.join(paths)}: not an option; a matrix run collects only --matrix (paths "
                                   "and test files are not run here)", key="pytest arguments after --")
            return config.hook.pytest_cmdline_main(config=config)
        except pytest.UsageError as exc:
            raise HarnessError(_one_line(exc), key="pytest") from None
        finally:
            config._ensure_unconfigure()
    finally:
        os.environ.pop("PYTEST_VERSION", None)


def _one_line(exc: BaseException) -> str:
    """pytest's usage error (argparse's usage, `error: ...`, inifile and rootdir lines) as its one telling line."""
    lines = [line.strip() for arg in exc.args for line in str(arg).splitlines() if line.strip()]
    for line in lines:
        if "error:" in line:
            return line.split("error:", 1)[1].strip()
    return lines[0] if lines else type(exc).__name__


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
