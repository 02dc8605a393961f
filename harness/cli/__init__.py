"""The command line: `python -m harness COMMAND`, one `cmd_*` module per command."""
