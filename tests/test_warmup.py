"""The executor warm-up: its background C++ set-up is inductor's own one-time work, not extra work."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code: str, tmp_path, **env: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter with an empty inductor cache and TMPDIR (where headers are precompiled)."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    full_env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"), "TMPDIR": str(tmp_path / "tmp"),
                "TORCHINDUCTOR_COMPILE_THREADS": "1", "PYTHONPATH": REPO, **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full_env, cwd=REPO, timeout=600)


def _headers(tmp_path) -> list[str]:
    """The precompiled headers inductor built under this test's TMPDIR."""
    found = []
    for root, _, files in os.walk(tmp_path / "tmp"):
        found += [name for name in files if name.endswith(".gch")]
    return found


@pytest.mark.slow
def test_background_kernel_builds_the_header_the_cells_kernels_use(tmp_path):
    # After the warm-up, a cell-like compile (another dtype, a reduction) must reuse the one header: a second header
    # would mean the background kernel's command line differs from inductor's and its g++ work is wasted.
    proc = _python("""
        import threading, torch
        from harness.running.warmup import prepare
        prepare()
        # (a cold warm-up also starts tqdm's monitor thread; the fork server stops it before forking)
        assert not [t for t in threading.enumerate() if t.name == "harness-cpp-setup"], threading.enumerate()
        f = torch.compile(lambda x, w: (torch.nn.functional.silu(x @ w) * x).sum(-1))
        x = torch.randn(7, 16, dtype=torch.bfloat16)
        f(x, torch.randn(16, 16, dtype=torch.bfloat16))
        print("compiled")
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "compiled" in proc.stdout
    assert "background C++ set-up failed" not in proc.stderr
    assert len(_headers(tmp_path)) == 1, _headers(tmp_path)


@pytest.mark.slow
def test_a_failing_background_set_up_costs_only_its_head_start(tmp_path):
    proc = _python("""
        import threading
        from harness.running import warmup

        warmup._CPP_KERNEL += "#error no compiler today\\n"  # fails after the header is built, like a g++ failure
        warmup.prepare()
        assert not [t for t in threading.enumerate() if t.name == "harness-cpp-setup"], threading.enumerate()
        print("prepared")
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "prepared" in proc.stdout
    assert "background C++ set-up failed, the warm-up compile does it:" in proc.stderr
    assert "no compiler today" in proc.stderr
    assert len(_headers(tmp_path)) == 1  # the warm-up's own compile found and used the one header


def test_an_executor_whose_warm_up_fails_still_serves(tmp_path):
    # The warm-up only saves time: an exception in it is logged and the executor answers cells (the first one
    # then pays the set-up), instead of dying before `ready` and costing that cell an ExecutorStartFailed.
    from harness.cells.cell import expand_cells
    from harness.cells.spec import cell_spec
    from harness.config.load import load_matrix

    matrix = load_matrix(os.path.join(REPO, "matrix.yaml"), import_backends=False)
    cell = next(c for c in expand_cells(matrix) if c.source == "reference" and c.mode == "uncompiled"
                and c.device == "cpu" and c.layout == "default")
    code = """
        import sys
        from harness.running import warmup, executor_child
        def broken():
            raise RuntimeError("warm-up broke")
        warmup.prepare = broken
        executor_child.main()
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=REPO,
                          input=json.dumps(cell_spec(matrix, cell)) + "\n", timeout=300,
                          env={**os.environ, "PYTHONPATH": REPO})
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0]["ready"] is True and lines[1]["status"] == "pass", proc.stdout + proc.stderr
    assert "RuntimeError: warm-up broke" in proc.stderr and "serving without it" in proc.stderr
