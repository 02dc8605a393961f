"""`python -m harness run`: validate the matrix, then run its cells as pytest items (xdist-parallel)."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from harness.errors import EXIT_INTERRUPTED, EXIT_REGRESSION, EXIT_USAGE, HarnessError

_INI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pytest_matrix.ini")


def add_parser(sub) -> None:
    """Register `run` and its options."""
    run = sub.add_parser("run", help="run the compile matrix (pytest items, one per cell)")
    run.add_argument("--matrix", default="matrix.yaml", help="matrix file (default: matrix.yaml)")
    run.add_argument("--out", default=os.path.join("reports", "latest"),
                     help="output folder for results.json, junit.xml and logs (default: reports/latest)")
    run.add_argument("--source", action="append", default=[], help="only this source (repeatable)")
    run.add_argument("--device", action="append", default=[], choices=["cpu", "cuda"],
                     help="only this device (repeatable; default: every device, cuda cells are "
                          "not_applicable without a GPU)")
    run.add_argument("--cell", action="append", default=[], help="only the cell with this exact id (repeatable)")
    run.add_argument("-k", dest="keyword", default=None, help="pytest -k expression over cell ids")
    run.add_argument("-n", dest="workers", default="auto", help="pytest-xdist workers: a number or auto")
    run.add_argument("--shard", default=None, metavar="I/N",
                     help="run only shard I of N (1-based) of the selected cells, for several runners")
    run.add_argument("--repeat", type=int, default=1, metavar="N",
                     help="run every cell N times; a cell whose status varies is reported flaky (exit 1)")
    run.add_argument("--resume", action="store_true",
                     help="keep the finished cells of an interrupted run in --out and run only the rest")
    run.add_argument("--strict", action="store_true", help="unexpected passes fail the run (exit 1)")
    run.add_argument("--transformers-src", default=None, metavar="PATH",
                     help="test this transformers source tree (the src/ of a checkout, or a folder holding "
                          "transformers/) instead of the installed package")
    run.add_argument("--baseline", default=None, metavar="FILE|auto",
                     help="after the run, diff against this baseline (auto: reports/baselines/<environment>.json); "
                          "new failures, changed failures, fixes and flaky cells exit 1")
    run.add_argument("-q", "--quiet", action="count", default=0, help="less pytest output")
    run.add_argument("-v", "--verbose", action="count", default=0, help="more pytest output")
    run.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")


def run(args: argparse.Namespace) -> int:
    """Run the selected cells; 0 no regression, 1 regression, 2 bad input, 130 interrupted."""
    from harness import forkserver
    from harness.executor import executor_env

    if args.transformers_src:
        from harness.transformers_src import ENV_VAR, resolve_src

        # Inherited by xdist workers and their executors (which put it first on PYTHONPATH) and read by
        # environment.py for results.json.
        os.environ[ENV_VAR] = resolve_src(args.transformers_src)
    # First thing: the fork server's torch import and warm-up overlap the validation and pytest start-up below.
    server = forkserver.start(executor_env(None), os.path.join(args.out, "logs", "forkserver.log"))
    if server is not None:
        os.environ[forkserver.ENV_VAR] = server[1]  # inherited by the xdist workers
    try:
        return _run(args, args.argv)
    finally:
        forkserver.stop(server)
        if server is not None:
            os.environ.pop(forkserver.ENV_VAR, None)


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    from harness.cells import expand_cells
    from harness.environment import cuda_capability, format_capability
    from harness.matrix import load_matrix

    matrix = load_matrix(args.matrix)
    cells = expand_cells(matrix)
    sources = sorted({cell.source for cell in cells})
    for source in args.source:
        if source not in sources:
            raise HarnessError(f"no backend of source {source!r} in {args.matrix}", key="--source",
                               allowed=", ".join(sources))
    capability = cuda_capability()  # once here, handed to the workers (they need not import torch)
    if "cuda" in args.device:
        if capability is None:
            raise HarnessError("--device cuda asks for cells that cannot run: this machine has no CUDA device "
                               "(torch.cuda.is_available() is False)", key="--device")
    known = {cell.id for cell in cells}
    for cell_id in args.cell:
        if cell_id not in known:
            raise HarnessError(f"no cell with id {cell_id!r} in {args.matrix}", key="--cell")
    selected = [c for c in cells if (not args.source or c.source in args.source)
                and (not args.device or c.device in args.device) and (not args.cell or c.id in args.cell)]
    if not selected:
        raise HarnessError("the selection matches no cell", key="--source/--device")
    workers = _workers(args.workers, len(selected))
    pytest_args = [os.path.abspath(args.matrix), "-c", _INI, "--rootdir", os.path.dirname(os.path.abspath(args.matrix)),
                   "--matrix", os.path.abspath(args.matrix), "--matrix-out", args.out,
                   "--junitxml", os.path.join(args.out, "junit.xml"), "--matrix-argv", " ".join(argv),
                   "-p", "xdist", "-n", str(workers), "-rfE", "--matrix-cuda", format_capability(capability),
                   # Each worker takes a contiguous half of the run order and steals from the other's end when done:
                   # cells that compile the same graphs stay on one worker (`--dist load` hands out small chunks
                   # alternately, so two workers built the same kernel at once, one waiting on the other's cache lock).
                   "--dist", "worksteal"]
    for source in args.source:
        pytest_args += ["--matrix-source", source]
    for device in args.device:
        pytest_args += ["--matrix-device", device]
    for cell_id in args.cell:
        pytest_args += ["--matrix-cell", cell_id]
    if args.keyword:
        pytest_args += ["-k", args.keyword]
    if args.strict:
        pytest_args.append("--matrix-strict")
    if args.repeat < 1:
        raise HarnessError(f"must be >= 1, got {args.repeat}", key="--repeat")
    if args.repeat > 1:
        pytest_args += ["--matrix-repeat", str(args.repeat)]
    if args.resume:
        pytest_args += ["--matrix-resume", _resume_file(args.out)]
    if args.shard:
        _parse_shard(args.shard)
        pytest_args += ["--matrix-shard", args.shard]
    pytest_args += ["-q"] * args.quiet + ["-v"] * args.verbose + list(args.pytest_args)
    if args.baseline not in (None, "auto") and not os.path.isfile(args.baseline):
        raise HarnessError(f"no such baseline file: {args.baseline}", key="--baseline")  # before, not after, the run
    code = _pytest_main(pytest_args)
    if args.baseline and code in (0, EXIT_REGRESSION):
        from harness.baseline import check_run

        lines, gate = check_run(os.path.join(args.out, "results.json"), args.baseline)
        print("\n".join(lines))
        code = EXIT_REGRESSION if gate else code
    return code


def _resume_file(out: str) -> str:
    """Copy the finished cells of `<out>/results.json` aside (the new run rewrites that file) and return the copy."""
    from harness.results import atomic_write_json, read_results

    previous = os.path.join(out, "results.json")
    if not os.path.exists(previous):
        raise HarnessError(f"nothing to resume: {previous} does not exist", key="--resume")
    doc = read_results(previous)
    aside = os.path.join(out, "resumed-from.json")
    atomic_write_json(aside, doc)
    print(f"resuming: {len(doc['cells'])} cells already finished in {previous}", file=sys.stderr)
    return aside


def _parse_shard(value: str) -> tuple[int, int]:
    """`I/N` with 1 <= I <= N."""
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise HarnessError(f"must look like I/N (e.g. 1/4), got {value!r}", key="--shard") from None
    if not 1 <= index <= count:
        raise HarnessError(f"shard index must be between 1 and {count}, got {index}", key="--shard")
    return index, count


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
    import pytest

    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [repo_root, os.environ.get("PYTHONPATH")]))
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        code = pytest.main(pytest_args)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code == pytest.ExitCode.OK:
        return 0
    if code == pytest.ExitCode.TESTS_FAILED:
        return EXIT_REGRESSION
    if code == pytest.ExitCode.INTERRUPTED:
        return EXIT_INTERRUPTED
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("error: no cell selected (check -k)", file=sys.stderr)
        return EXIT_USAGE
    if code == pytest.ExitCode.USAGE_ERROR:
        return EXIT_USAGE
    return int(code)


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
