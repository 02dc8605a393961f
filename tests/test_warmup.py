"""The executor warm-up: its background C++ set-up is inductor's own one-time work, not extra work."""

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
