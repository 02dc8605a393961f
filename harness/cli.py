"""Command line: `python -m harness COMMAND ...`; each command lives in its own `cmd_*` module."""

from __future__ import annotations

import argparse
import importlib
import sys

from harness.errors import EXIT_USAGE, HarnessError

# command name -> module with add_parser(subparsers) and run(args) -> exit code
COMMANDS = {
    "run": "harness.cmd_run",
    "speed": "harness.cmd_speed",
    "bench": "harness.cmd_bench",
    "report": "harness.cmd_report",
    "docs": "harness.cmd_docs",
    "merge": "harness.cmd_merge",
    "update-baseline": "harness.cmd_baseline",
    "update-expectations": "harness.cmd_expectations",
    "repro": "harness.cmd_repro",
    "history": "harness.cmd_history",
}


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are HarnessErrors: one line, exit 2, no traceback."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.print_usage(sys.stderr)
        raise HarnessError(message)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser, one subparser per command."""
    parser = _Parser(prog="python -m harness", description="Compile-compatibility matrix for MoE experts backends")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, module in COMMANDS.items():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 1 regression, 2 bad input or usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        args.argv = argv
        return importlib.import_module(COMMANDS[args.command]).run(args)
    except HarnessError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return EXIT_USAGE
