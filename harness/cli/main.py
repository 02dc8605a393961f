"""Command line: `python -m harness COMMAND ...`; each command lives in its own `cmd_*` module."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from harness.errors import EXIT_INTERRUPTED, EXIT_USAGE, HarnessError

EXIT_INTERNAL = 3

# command name -> module with add_parser(subparsers) and run(args) -> exit code
COMMANDS = {
    "run": "harness.cli.cmd_run",
    "speed": "harness.cli.cmd_speed",
    "bench": "harness.cli.cmd_bench",
    "report": "harness.cli.cmd_report",
    "docs": "harness.cli.cmd_docs",
    "merge": "harness.cli.cmd_merge",
    "update-baseline": "harness.cli.cmd_baseline",
    "update-expectations": "harness.cli.cmd_expectations",
    "repro": "harness.cli.cmd_repro",
    "history": "harness.cli.cmd_history",
}

# Options whose default is a path: relative defaults are resolved against the checkout (usage.checkout_root), so
# that a command run from another folder finds matrix.yaml and reports/. Paths given on the command line stay
# relative to the current folder, as everywhere else.
_PATH_DESTS = ("matrix", "out", "baselines", "dir", "claims")

_USAGE_EXIT = "  2    bad usage or input: one `error:` line naming the option, file, line or key; nothing done"
_COMMON_EXITS = [_USAGE_EXIT, "  3    internal error: a bug in the harness (or in a pytest plugin given after --)",
                 "  130  interrupted (Ctrl-C, SIGTERM)"]

# command -> (examples, the meaning of exit codes 0 and 1)
HELP = {
    "run": ([
        "python -m harness run                                     # every cell; cuda cells only where a GPU is",
        "python -m harness run --source reference --device cpu -n 2",
        "python -m harness run -k 'grouped_mm and bfloat16 and not fullgraph'",
        "python -m harness run -k default                          # compile mode `default` (torch.compile mode=None)",
        "python -m harness run --cell reference-grouped_mm-default-bfloat16-fullgraph-cpu-decode",
        "python -m harness run --last-failed                       # rerun what failed, merged into results.json",
        "python -m harness run --resume                            # finish an interrupted run",
        "python -m harness run --device cpu --shard 1/2 --strict --baseline auto   # one CI shard",
        "python -m harness run -- -x -p myplugin                   # extra pytest arguments",
    ], ["  0    no regression (unexpected passes are listed; with --strict they exit 1)",
        "  1    a regression, a flaky cell, an unexpected pass under --strict, or a gating change against --baseline"]),
    "merge": ([
        "python -m harness merge out/cpu-1/results.json out/cpu-2/results.json out/gpu/results.json --out merged",
        "python -m harness merge artifacts/*/results.json --out merged --baseline auto",
    ], ["  0    merged; nothing flaky, no gating change against --baseline",
        "  1    flaky cells, or gating changes against --baseline"]),
    "report": ([
        "python -m harness report reports/latest/results.json",
        "python -m harness report merged/merged.json --format html --out report.html",
    ], ["  0    report written", "  1    (not used)"]),
    "docs": ([
        "python -m harness docs --check reports/support_table.md",
        "python -m harness docs --update docs/source/en/experts_interface.md",
    ], ["  0    the page matches the measurement (or was updated)", "  1    --check: the page's table differs"]),
    "update-baseline": ([
        "python -m harness update-baseline reports/latest/results.json",
        "python -m harness update-baseline --check artifacts/*/results.json",
    ], ["  0    baselines written (with --check: nothing would change)", "  1    --check: a baseline would change"]),
    "update-expectations": ([
        "python -m harness update-expectations reports/latest/results.json",
        "python -m harness update-expectations --check reports/latest/results.json",
    ], ["  0    matrix.yaml updated (with --check: nothing would change)", "  1    --check: a rule would change"]),
    "repro": ([
        "python -m harness repro reference-grouped_mm-default-bfloat16-fullgraph-cpu-decode",
        "python -m harness repro CELL_ID --results reports/latest/results.json --out - | python",
    ], ["  0    script written", "  1    (not used)"]),
    "speed": ([
        "python -m harness speed --naive-sample 8",
        "python -m harness speed --source reference --device cpu --warm-runs 1 --out /tmp/speed",
    ], ["  0    measured; every run gave identical statuses", "  1    statuses differed between runs"]),
    "bench": ([
        "python -m harness bench --device cpu --tokens 1,16 --dtypes float32",
        "python -m harness bench --report reports/bench          # regenerate plots and CLAIMS.md only",
    ], ["  0    measured (or report regenerated)", "  1    (not used)"]),
}


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are HarnessErrors: one line naming the problem, exit 2, no usage dump or traceback."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise HarnessError(f"{message} (see: {self.prog} --help)")


def _version() -> str:
    from harness import __version__
    from harness.cli.usage import checkout_root

    return f"moe-compile-matrix {__version__} (harness at {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}; " \
           f"checkout {checkout_root()}; python {sys.version.split()[0]})"


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser, one subparser per command."""
    from harness.cli.usage import checkout_root

    parser = _Parser(prog="python -m harness", formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Compile-compatibility matrix for MoE experts backends",
                     epilog="Every command: `python -m harness COMMAND --help` shows examples and exit codes.\n\n"
                            "exit codes (every command):\n  0    success, no regression\n  1    regression "
                            "(what counts depends on the command)\n" + "\n".join(_COMMON_EXITS))
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    root = checkout_root()
    for name, module in COMMANDS.items():
        importlib.import_module(module).add_parser(sub)
        command = sub.choices[name]
        examples, exits = HELP.get(name, ([f"python -m harness {name} --help"], ["  0    success", "  1    regression"]))
        command.formatter_class = argparse.RawDescriptionHelpFormatter
        command.epilog = ("examples:\n" + "\n".join(f"  {line}" for line in examples)
                          + "\n\nexit codes:\n" + "\n".join(exits + _COMMON_EXITS))
        for action in command._actions:
            if action.dest in _PATH_DESTS and isinstance(action.default, str) and not os.path.isabs(action.default):
                action.default = os.path.join(root, action.default)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 regression, 2 bad input or usage, 3 internal error, 130)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, unknown = build_parser().parse_known_args(argv)
        if unknown:  # named after the command's own help, not the top-level one argparse would name
            raise HarnessError(f"unrecognized arguments: {' '.join(unknown)} "
                               f"(see: python -m harness {args.command} --help)")
        args.argv = argv
        return importlib.import_module(COMMANDS[args.command]).run(args)
    except HarnessError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:  # a file that cannot be read or written, found late: still one line, not a traceback
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception:  # noqa: BLE001 - a bug: the traceback, but not exit 1 (which means "regression")
        traceback.print_exc()
        print("error: internal error (the traceback above is a bug in the harness; please report it)",
              file=sys.stderr)
        return EXIT_INTERNAL
