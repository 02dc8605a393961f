"""environment.py: the no-GPU shortcut that keeps torch out of the controller, and what it reports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.environment import machine as environment
from tests.conftest import REPO_ROOT


def test_any_gpu_device_node_means_torch_must_be_asked(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(environment.glob, "glob", lambda pattern: ["/dev/kfd"] if pattern == "/dev/kfd" else [])
    assert not environment.gpu_impossible()
    monkeypatch.setattr(environment.glob, "glob", lambda pattern: [])
    assert environment.gpu_impossible()
    monkeypatch.setattr(sys, "platform", "darwin")  # no device nodes to go by: always ask torch
    assert not environment.gpu_impossible()


def test_torch_version_without_import_equals_the_imported_one():
    import torch

    assert environment.torch_version() == torch.__version__


@pytest.mark.skipif(not environment.gpu_impossible(), reason="this machine has GPU device nodes")
def test_no_gpu_machine_answers_without_importing_torch():
    code = ("import sys; from harness.environment import machine as e; "
            "print(e.cuda_capability(), e.cuda_available(), e.collect(('cpu', 'cuda'))['compute_capability'], "
            "'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["None", "False", "None", "False"]
