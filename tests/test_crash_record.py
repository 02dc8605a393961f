"""A backend that kills the interpreter: the crash record names the backend's frame, not the harness's threads."""

from __future__ import annotations

import sysconfig

import pytest

from harness.running.executor import crash_report
from tests.conftest import fixture_backend, load_cells, matrix_doc, run_harness, write_matrix

# What faulthandler (PYTHONFAULTHANDLER=1) prints when a process with a second thread aborts: every thread,
# the newest first, so the harness's sleeping watchdog comes before the thread that crashed.
TWO_THREADS = """\
[harness] executor log
Fatal Python error: Aborted

Thread 0x00007f98054146c0 (most recent call first):
  File "/work/harness/running/executor_child.py", line 61 in watch
  File "/usr/lib/python3.11/threading.py", line 982 in run
  File "/usr/lib/python3.11/threading.py", line 1045 in _bootstrap_inner

Current thread 0x00007f9824c20b80 (most recent call first):
  File "/work/tests/fixtures/backends.py", line 77 in abort
  File "/work/harness/measure/cell_run.py", line 85 in forward
  File "/work/harness/measure/cell_run.py", line 41 in run_cell

Extension modules: numpy.core._multiarray_umath, torch._C (total: 2)
"""

ONE_THREAD = """\
Fatal Python error: Segmentation fault

Stack (most recent call first):
  File "/work/my_backend.py", line 12 in kernel
  File "/work/harness/measure/cell_run.py", line 85 in forward
"""

NATIVE_THREAD = """\
Fatal Python error: Segmentation fault

Thread 0x0000000000000001 (most recent call first):
  File "/work/harness/running/executor_child.py", line 61 in watch

Current thread 0x0000000000000002 (most recent call first):
  <no Python frame>
"""


def _log(tmp_path, text):
    path = tmp_path / "executor.log"
    path.write_text(text)
    return str(path)


def test_the_crashing_thread_is_named_not_the_watchdog(tmp_path):
    line, frames = crash_report(_log(tmp_path, TWO_THREADS), 0)
    assert line == 'Fatal Python error: Aborted | File "/work/tests/fixtures/backends.py", line 77 in abort'
    assert frames[0].endswith("in abort") and frames[-1].endswith("in run_cell") and len(frames) == 3
    assert not any("in watch" in frame for frame in frames)


def test_a_single_threaded_crash_and_a_crash_outside_python(tmp_path):
    line, frames = crash_report(_log(tmp_path, ONE_THREAD), 0)
    assert line.endswith('File "/work/my_backend.py", line 12 in kernel') and len(frames) == 2
    line, frames = crash_report(_log(tmp_path, NATIVE_THREAD), 0)
    assert "in watch" not in line and frames == ["<no Python frame>"]


def test_a_crash_inside_the_standard_library_names_its_caller_too(tmp_path):
    stdlib = sysconfig.get_paths()["stdlib"]
    text = ("Fatal Python error: Segmentation fault\n\nCurrent thread 0x1 (most recent call first):\n"
            f'  File "{stdlib}/ctypes/__init__.py", line 519 in string_at\n'
            '  File "/work/tests/fixtures/backends.py", line 82 in segfault\n')
    line, _ = crash_report(_log(tmp_path, text), 0)
    assert line.endswith('in string_at (called from File "/work/tests/fixtures/backends.py", line 82 in segfault)')


def test_only_what_the_cell_wrote_counts(tmp_path):
    path = _log(tmp_path, TWO_THREADS + ONE_THREAD)
    line, _ = crash_report(path, len(TWO_THREADS))
    assert "my_backend.py" in line and "backends.py" not in line


def test_without_faulthandler_output_the_last_lines_are_kept(tmp_path):
    line, frames = crash_report(_log(tmp_path, "loading\nterminate called after throwing an instance of 'x'\n"), 0)
    assert line.startswith("terminate called") and frames == []


@pytest.mark.slow
@pytest.mark.parametrize("forkserver", ["1", "0"])
def test_an_aborting_backend_is_recorded_at_its_own_frame(tmp_path, forkserver):
    doc = matrix_doc({"abort": fixture_backend("abort")}, axes={"mode": ["uncompiled"]})
    matrix = write_matrix(tmp_path / "matrix.yaml", doc)
    proc = run_harness("run", "--matrix", str(matrix), "--out", str(tmp_path / "out"), "-n", "0",
                       env={"HARNESS_FORKSERVER": forkserver})
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    error = load_cells(tmp_path / "out")["user-abort-uncompiled-float32-cpu-prefill"]["error"]
    assert error["type"] == "Crash" and "SIGABRT" in error["message"]
    assert "fixtures/backends.py" in error["message"] and "in abort" in error["message"], error
    assert "executor_child" not in error["message"] and "in watch" not in error["message"]
    assert error["detail"].splitlines()[0].endswith("in abort")  # the crashing thread's frames, innermost first
