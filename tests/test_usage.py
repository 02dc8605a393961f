"""Bad usage, tried as a user would: one `error:` line, exit 2, before any cell runs, earlier results intact.

Also: --help shows examples and exit codes, --version, defaults that work from any folder, -k over ids.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.environment import machine as environment
from harness.cli.main import COMMANDS, build_parser
from harness.results.results_json import SCHEMA_VERSION
from tests.conftest import REPO_ROOT, fixture_backend, matrix_doc, run_harness, write_matrix

GPU = environment.cuda_available()
CELL = "user-healthy-uncompiled-float32-cpu-prefill"


def _previous_results(path: Path) -> None:
    """A finished run's results.json, as the harness writes it (no cell needs to run for these tests)."""
    cell = {"id": CELL, "source": "user", "backend": "healthy", "mode": "uncompiled", "dtype": "float32",
            "fullgraph": None, "device": "cpu", "shape": "prefill", "layout": "default", "scope": "kernel",
            "phase": "inference", "status": "pass", "expected": {"outcome": "pass"}, "verdict": "ok",
            "verdict_reason": "passed as expected", "error": None, "signals": {}, "duration_s": 0.1, "repro": ""}
    doc = {"schema": SCHEMA_VERSION, "complete": True, "interrupted": False, "shard": None,
           "environment": environment.collect(("cpu",)), "cells": [cell]}
    path.write_text(json.dumps(doc, indent=1))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("usage")
    doc = matrix_doc({"healthy": fixture_backend("healthy")}, axes={"mode": ["uncompiled"], "device": ["cpu", "cuda"]})
    matrix = write_matrix(folder / "matrix.yaml", doc)
    out = folder / "out"
    out.mkdir()
    _previous_results(out / "results.json")
    (out / "junit.xml").write_text("<testsuites><testsuite name='earlier'/></testsuites>")
    (folder / "corrupt.json").write_text('{"schema": 1, "cells": [')
    (folder / "a-file").write_text("not a folder")
    return folder, matrix, out


def _files(out: Path) -> dict[str, bytes]:
    return {str(path.relative_to(out)): path.read_bytes() for path in sorted(out.rglob("*"))
            if path.is_file() and path.parent.name != "logs"}


# (arguments after `run --matrix M --out OUT`, what the error line must say)
RUN_MISTAKES = [
    (["--bogus"], "unrecognized arguments: --bogus (see: python -m harness run --help)"),
    (["--shard", "3/2"], "--shard: shard index must be between 1 and 2"),
    (["--shard", "1/0"], "--shard: the number of shards must be at least 1"),
    (["--shard", "half"], "--shard: must look like I/N"),
    (["--cell", "user-nope"], "--cell: no cell with id 'user-nope'"),
    (["-k", "nothing_like_this"], "-k: 'nothing_like_this' matches none of the 2 selected cells"),
    (["-k", "healthy and ("], "-k: not a valid expression"),
    (["--baseline", "{folder}/corrupt.json"], "not valid JSON"),
    (["--baseline", "{folder}/missing.json"], "--baseline: no such baseline file"),
    (["--device", "gpu"], "argument --device: invalid choice: 'gpu'"),
    (["--source", "nope"], "--source: no backend of source 'nope'"),
    (["-n", "many"], "-n: must be a whole number or 'auto'"),
    (["--repeat", "0"], "--repeat: must be >= 1"),
    (["--transformers-src", "{folder}/nowhere"], "--transformers-src:"),
    (["--resume", "--last-failed"], "not allowed with argument --resume"),
    (["--resume", "--shard", "1/2"], "--resume: the run in"),
    (["--", "--lf"], "--lf: pytest's cache is off in matrix runs (results.json is the record): use "
                     "`python -m harness run --last-failed`"),
    (["--", "--last-failed"], "python -m harness run --last-failed"),
    (["--", "--bogus"], "pytest arguments after --: unrecognized arguments: --bogus"),
    (["--", "-p", "no_such_plugin_xyz"], "no_such_plugin_xyz"),
    (["--", "tests/"], "pytest arguments after --: tests/: not an option"),
    (["--", "--junitxml=x.xml"], "the harness writes <out>/junit.xml itself"),
    (["--", "-k", "nothing_like_this"], "-k: '(nothing_like_this)' matches none"),
]
if not GPU:
    RUN_MISTAKES += [(["--device", "cuda"], "--device: --device cuda asks for cells that cannot run"),
                     (["-k", "cuda"], "all 1 selected cells are cuda cells and this machine has no CUDA device")]


@pytest.mark.parametrize("extra, needle", RUN_MISTAKES, ids=[" ".join(args) for args, _ in RUN_MISTAKES])
def test_run_mistakes_are_one_line_and_exit_2_with_results_intact(setup, extra, needle):
    folder, matrix, out = setup
    before = _files(out)
    args = [arg.replace("{folder}", str(folder)) for arg in extra]
    proc = run_harness("run", "--matrix", str(matrix), "--out", str(out), *args)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
    assert proc.stdout.strip() == "", proc.stdout  # nothing ran, nothing was printed as if it had
    assert _files(out) == before  # results.json and junit.xml byte for byte
    assert not list((out / "logs").glob("executor-*")) if (out / "logs").exists() else True


@pytest.mark.parametrize("make_out, option, needle", [
    (lambda folder: folder / "a-file", "--out", "--out: {path} exists and is not a folder"),
    (lambda folder: folder / "a-file" / "below", "--out", "--out: cannot write into"),
    (lambda folder: folder / "empty", "--resume", "--resume: nothing to resume: {path}/results.json does not exist"),
    (lambda folder: folder / "empty", "--last-failed", "--last-failed: no earlier run"),
])
def test_out_folder_mistakes(setup, make_out, option, needle):
    folder, matrix, _ = setup
    out = make_out(folder)
    args = ["--out", str(out)] + ([option] if option != "--out" else [])
    proc = run_harness("run", "--matrix", str(matrix), *args)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert needle.format(path=out) in proc.stderr, proc.stderr
    assert (folder / "a-file").read_text() == "not a folder"


def test_corrupt_previous_results_with_resume(setup, tmp_path):
    _, matrix, _ = setup
    (tmp_path / "results.json").write_text('{"schema": 1, "cells": [')
    proc = run_harness("run", "--matrix", str(matrix), "--out", str(tmp_path), "--resume")
    assert proc.returncode == 2 and "results.json:1: not valid JSON" in proc.stderr and proc.stderr.count("\n") == 1
    assert (tmp_path / "results.json").read_text() == '{"schema": 1, "cells": ['


def test_missing_matrix(tmp_path):
    proc = run_harness("run", "--matrix", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and proc.stderr == f"error: --matrix: no such file: {tmp_path / 'none.yaml'}\n"


@pytest.mark.parametrize("args, needle", [
    (["merge", "{folder}/missing.json", "--out", "{folder}/merged"], "results: no such file"),
    (["merge", "{folder}/corrupt.json", "--out", "{folder}/merged"], "not valid JSON"),
    (["merge", "{out}/results.json", "--out", "{folder}/a-file"], "--out: {folder}/a-file exists and is not a folder"),
    (["merge"], "the following arguments are required: results, --out (see: python -m harness merge --help)"),
    (["update-baseline", "{out}/results.json", "--dir", "{folder}/a-file"], "--dir: {folder}/a-file exists"),
    (["update-baseline", "{folder}/corrupt.json", "--dir", "{folder}/baselines"], "not valid JSON"),
    (["update-expectations", "{out}/results.json", "--matrix", "{folder}/none.yaml"], "--matrix: no such file"),
    (["repro", "user-nope", "--matrix", "{folder}/matrix.yaml", "--out", "-"], "CELL_ID: no cell with id"),
    (["repro", CELL, "--matrix", "{folder}/matrix.yaml", "--out", "{folder}/a-file/x.py"], "--out:"),
    (["speed", "--matrix", "{folder}/matrix.yaml", "--out", "{folder}/a-file"], "--out:"),
    (["bench", "--out", "{folder}/a-file"], "--out:"),
    (["bench", "--report", "{folder}/nowhere"], "--report: no such folder"),
    (["report", "{folder}/corrupt.json"], "not valid JSON"),
    (["nonsense"], "argument COMMAND: invalid choice: 'nonsense'"),
])
def test_other_commands_mistakes(setup, args, needle):
    folder, _, out = setup
    before = _files(out)
    fill = {"folder": str(folder), "out": str(out)}
    proc = run_harness(*[arg.format(**fill) for arg in args])
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle.format(**fill) in lines[0], proc.stderr
    assert _files(out) == before and not (folder / "merged").exists()


def test_every_command_help_has_examples_and_exit_codes():
    parser = build_parser()
    subparsers = next(action for action in parser._actions if action.dest == "command").choices
    for name in COMMANDS:
        text = subparsers[name].format_help()
        assert "examples:" in text and "exit codes:" in text, name
        assert f"python -m harness {name}" in text.split("examples:")[1], name
        for code in ("0", "1", "2", "3", "130"):
            assert f"\n  {code} " in text.split("exit codes:")[1], (name, code)
    assert "--last-failed" in subparsers["run"].format_help()


def test_version_and_help_exit_0():
    proc = run_harness("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("moe-compile-matrix ")
    from harness import __version__

    assert __version__ in proc.stdout
    proc = run_harness("run", "--help")
    assert proc.returncode == 0 and "examples:" in proc.stdout and proc.stderr == ""


def test_defaults_resolve_against_the_checkout_from_any_folder(tmp_path):
    args = build_parser().parse_args(["run"])
    assert args.matrix == str(REPO_ROOT / "matrix.yaml") and args.out == str(REPO_ROOT / "reports" / "latest")
    merge = build_parser().parse_args(["merge", "x.json", "--out", "m"])
    assert Path(merge.baselines) == REPO_ROOT / "reports" / "baselines" and Path(merge.claims).is_file()
    assert merge.out == "m"  # what the user typed stays relative to where they are
    # Run from another folder: the default matrix is found (the -k mistake is reported, not a missing matrix).
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--out", str(tmp_path / "out"), "-k",
                           "nothing_like_this"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "-k: 'nothing_like_this' matches none of the" in proc.stderr, proc.stderr


def test_k_default_selects_the_compile_mode_not_the_layout(tmp_path):
    """`default` is a mode (torch.compile's mode=None) and the usual layout; -k sees only what the id shows."""
    doc = matrix_doc({"healthy": fixture_backend("healthy")},
                     axes={"mode": ["uncompiled", "default", "max-autotune-no-cudagraphs"],
                           "layout": ["default", "gpt_oss"]})
    matrix = write_matrix(tmp_path / "matrix.yaml", doc)
    out = tmp_path / "out"

    def collected(*args):
        proc = run_harness("run", "--matrix", str(matrix), "--out", str(out), "-n", "0", *args,
                           "--", "--collect-only", "-q")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return sorted(line.split("::")[1] for line in proc.stdout.splitlines() if "::" in line)

    default = collected("-k", "default")
    assert default == sorted(f"user-healthy-default-float32-{fg}-cpu-prefill{layout}"
                             for fg in ("fullgraph", "breaks-allowed") for layout in ("", "-gpt_oss"))
    others = collected("-k", "not default")
    assert len(others) == 6 and not any("-default-" in cell_id for cell_id in others)
    assert collected("-k", "gpt_oss and DEFAULT") == [c for c in default if c.endswith("gpt_oss")]  # any case
    assert not (out / "results.json").exists() and not (out / "junit.xml").exists()  # --collect-only ran nothing
