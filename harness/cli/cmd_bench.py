"""`python -m harness bench`: measure the experts backends' latency and memory, or regenerate the report."""

from __future__ import annotations

import argparse
import os

from harness.errors import EXIT_INTERRUPTED, HarnessError

_DEFAULT_OUT = os.path.join("reports", "bench")


def add_parser(sub) -> None:
    """Register `bench` and its options."""
    bench = sub.add_parser("bench", help="benchmark latency and memory of every experts backend (not a test)",
                           description="Benchmark every backend x compile setting x token count x dtype, write "
                                       "bench-<device>.json as it goes, then plots and CLAIMS.md. Lists are "
                                       "comma-separated; defaults depend on --device.")
    bench.add_argument("--device", choices=["cpu", "cuda"], default=None,
                       help="where to run (default: cuda if available, else cpu)")
    bench.add_argument("--out", default=_DEFAULT_OUT, help=f"output folder (default: {_DEFAULT_OUT})")
    bench.add_argument("--shapes", type=_csv, default=None,
                       help="preset names or NAME=HIDDENxINTERMEDIATExEXPERTSxTOP_K (default: the device's presets)")
    bench.add_argument("--tokens", type=_int_csv, default=None, help="token counts, e.g. 1,16,256")
    bench.add_argument("--dtypes", type=_csv, default=None, help="bfloat16, float16, float32")
    bench.add_argument("--modes", type=_csv, default=None,
                       help="uncompiled, default, max-autotune-no-cudagraphs, reduce-overhead, max-autotune (default: "
                            "uncompiled,default,reduce-overhead on cuda; uncompiled,default on cpu)")
    bench.add_argument("--backends", type=_csv, default=None,
                       help="source-backend, as cell ids begin: e.g. transformers-grouped_mm,reference-eager "
                            "(default: all six)")
    bench.add_argument("--budget-s", type=float, default=None,
                       help="time budget for measuring, seconds (default: 420 on cuda and on cpu); items that "
                            "do not fit are recorded as skipped")
    bench.add_argument("--max-reps", type=int, default=None, help="most timed calls per point")
    bench.add_argument("--memory-limit-gb", type=float, default=None,
                       help="skip batched_mm points whose weight copies would exceed this (default: 70%% of free "
                            "GPU memory; on CPU a quarter of the available RAM, at most 2 GiB)")
    bench.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads (default: 1 on cpu, where a shared machine makes more threads stall; "
                            "torch's default on cuda)")
    bench.add_argument("--tag", default=None,
                       help="write bench-<device>-<tag>.json instead of bench-<device>.json, e.g. for a second run "
                            "of other settings (--tag autotune --modes max-autotune-no-cudagraphs,max-autotune); "
                            "the report merges every file of a device")
    bench.add_argument("--report", metavar="DIR", default=None,
                       help="measure nothing: regenerate plots, CLAIMS.md and README.md from DIR's JSON")
    bench.add_argument("--no-plots", action="store_true", help="write CLAIMS.md and README.md without plots")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark (then its report) or only the report; 0 done, 2 bad input, 130 interrupted."""
    from harness.cli.usage import check_output_dir

    if args.report is not None:
        if not os.path.isdir(args.report):
            raise HarnessError(f"no such folder: {args.report}", key="--report")
        return _report(args.report, plots=not args.no_plots)
    check_output_dir(args.out, "--out")
    from harness.bench.config import make_config

    device = args.device or _default_device()
    if device == "cuda":
        from harness.environment.machine import cuda_available

        if not cuda_available():
            raise HarnessError("this machine has no CUDA device (torch.cuda.is_available() is False)", key="--device")
    config = make_config(device, shapes=args.shapes, tokens=args.tokens, dtypes=args.dtypes, modes=args.modes,
                         backends=args.backends, budget_s=args.budget_s, max_reps=args.max_reps,
                         memory_limit_gb=args.memory_limit_gb, threads=args.threads, tag=args.tag)
    from harness.bench.run import run_bench

    try:
        run_bench(config, args.out, args.argv, progress=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        print(f"interrupted: partial results kept in {args.out}", flush=True)
        return EXIT_INTERRUPTED
    plots = not args.no_plots and _have_matplotlib()
    if not args.no_plots and not plots:
        print(f"plots skipped (no matplotlib here): run `python -m harness bench --report {args.out}` where it is")
    return _report(args.out, plots=plots)


def _report(folder: str, *, plots: bool) -> int:
    from harness.bench.report import write_report

    written = write_report(folder, plots=plots)
    print(f"wrote in {folder}: {', '.join(written)}")
    return 0


def _default_device() -> str:
    from harness.environment.machine import cuda_available

    return "cuda" if cuda_available() else "cpu"


def _have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _csv(text: str) -> list[str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def _int_csv(text: str) -> list[int]:
    try:
        return [int(part) for part in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}") from None
