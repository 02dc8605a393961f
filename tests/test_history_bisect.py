"""Bisect inside a transformers checkout (issue 15): a synthetic git repository of a fake `transformers` package.

The fake package has what a transformers kernel cell's repro script needs (Qwen2MoeConfig, Qwen2MoeExperts behind
use_experts_implementation, ExpertsInterface with batched_mm). Its history: good, an unimportable commit, good
again, the commit that breaks batched_mm, one more. `git bisect run` with the driver must name the breaking commit
and skip the unimportable one (exit 125).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.history import bisect_driver as driver
from harness.history.bisect import bisect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CELL = "transformers-batched_mm-uncompiled-float32-cpu-decode"

INIT = '''__version__ = "{version}"


class PretrainedConfig:
    def __init__(self, **kwargs):
        self._experts_implementation = None
        for key, value in kwargs.items():
            setattr(self, key, value)


class Qwen2MoeConfig(PretrainedConfig):
    model_type = "qwen2_moe"
'''

MOE = '''import functools

import torch


def _default_apply_gate(self, gate_up_out):
    gate, up = gate_up_out.chunk(2, dim=-1)
    return self.act_fn(gate) * up


def batched_mm_experts_forward(self, hidden_states, top_k_index, top_k_weights):
    num_tokens, top_k = top_k_index.shape
    expert_ids = top_k_index.reshape(-1)
    token_idx = torch.arange(num_tokens, device=hidden_states.device).repeat_interleave(top_k)
    x = hidden_states[token_idx]
    gate_up = torch.bmm(self.gate_up_proj[expert_ids], x.unsqueeze(-1)).squeeze(-1)
    out = torch.bmm(self.down_proj[expert_ids], self._apply_gate(gate_up).unsqueeze(-1)).squeeze(-1)
    out = out * top_k_weights.reshape(-1, 1).to(out.dtype)
    return out.view(num_tokens, top_k, -1).sum(dim=1){bug}


class ExpertsInterface:
    _global_mapping = {{"batched_mm": batched_mm_experts_forward}}
    _local_mapping = {{}}

    def __contains__(self, key):
        return key in self._global_mapping or key in self._local_mapping

    def get_interface(self, key):
        return self._local_mapping.get(key) or self._global_mapping[key]


ALL_EXPERTS_FUNCTIONS = ExpertsInterface()


def use_experts_implementation(experts_class):
    init, eager_forward = experts_class.__init__, experts_class.forward

    @functools.wraps(init)
    def __init__(self, config, *args, **kwargs):
        init(self, config, *args, **kwargs)
        self.config, self.has_gate, self.has_bias, self.is_transposed = config, True, False, False

    @functools.wraps(eager_forward)
    def forward(self, *args, **kwargs):
        key = self.config._experts_implementation or "eager"
        if key == "eager":
            return eager_forward(self, *args, **kwargs)
        return ALL_EXPERTS_FUNCTIONS.get_interface(key)(self, *args, **kwargs)

    experts_class.__init__, experts_class.forward, experts_class._apply_gate = __init__, forward, _default_apply_gate
    return experts_class
'''

MODELING = '''import torch
from torch import nn

from ...integrations.moe import use_experts_implementation


@use_experts_implementation
class Qwen2MoeExperts(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_experts = config.num_experts
        hidden, inter = config.hidden_size, config.moe_intermediate_size
        self.gate_up_proj = nn.Parameter(torch.empty(self.num_experts, 2 * inter, hidden))
        self.down_proj = nn.Parameter(torch.empty(self.num_experts, hidden, inter))
        self.act_fn = nn.SiLU()

    def forward(self, hidden_states, top_k_index, top_k_weights):
        out = torch.zeros_like(hidden_states)
        for t in range(top_k_index.shape[0]):
            for k in range(top_k_index.shape[1]):
                e = int(top_k_index[t, k])
                gate, up = (self.gate_up_proj[e] @ hidden_states[t]).chunk(2)
                out[t] += top_k_weights[t, k] * (self.down_proj[e] @ (self.act_fn(gate) * up))
        return out
'''


def write_fake(src: str, version: str = "5.99.0.dev0", bug: str = "", moe: str | None = None) -> None:
    """A fake transformers package in `src`/transformers."""
    files = {"__init__.py": INIT.format(version=version), "integrations/__init__.py": "",
             "integrations/moe.py": moe if moe is not None else MOE.format(bug=bug), "models/__init__.py": "",
             "models/qwen2_moe/__init__.py": "", "models/qwen2_moe/modeling_qwen2_moe.py": MODELING}
    for name, text in files.items():
        path = os.path.join(src, "transformers", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)


def _git(repo: str, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, check=True, env=env).stdout


def _commit(repo: str, message: str, **fake) -> str:
    write_fake(os.path.join(repo, "src"), **fake)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """good, unimportable, good, breaking (output x1.5), one more: (repo, {name: sha})."""
    repo = str(tmp_path_factory.mktemp("fake-transformers"))
    _git(repo, "init", "-q")
    shas = {"good": _commit(repo, "experts interface with batched_mm")}
    shas["unimportable"] = _commit(repo, "half-done refactor", moe="def broken(:\n")
    shas["fixed_import"] = _commit(repo, "finish the refactor")
    shas["breaking"] = _commit(repo, "batched_mm: rescale the output", bug=" * 1.5")
    shas["head"] = _commit(repo, "docs", version="5.99.1.dev0", bug=" * 1.5")
    return repo, shas


@pytest.fixture(scope="module")
def repro_script(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("repro") / "repro.py")
    subprocess.run([sys.executable, "-m", "harness", "repro", CELL, "--out", path], cwd=ROOT, check=True,
                   capture_output=True)
    return path


def test_classify_maps_outcomes_to_bisect_exit_codes():
    assert driver.classify(0, "", None) == 0
    assert driver.classify(1, "AssertionError: max relative error", None) == 1
    assert driver.classify(-11, "", None) == 1  # a crash reproduces a failure
    assert driver.classify(125, "cannot test", None) == 125
    assert driver.classify(None, "timed out", None) == 125
    assert driver.classify(1, "MisDispatch: ...", "relative error") == 125  # failed another way: cannot say


def test_driver_skips_a_commit_where_transformers_does_not_import(checkout, repro_script, tmp_path):
    repo, shas = checkout
    src = str(tmp_path / "src")
    write_fake(src, moe="def broken(:\n")
    assert driver.main(["--script", repro_script, "--src", src]) == 125


def test_driver_skips_a_commit_without_the_backend(repro_script, tmp_path):
    src = str(tmp_path / "src")
    write_fake(src, moe=MOE.format(bug="").replace('{"batched_mm": batched_mm_experts_forward}', "{}"))
    assert driver.main(["--script", repro_script, "--src", src]) == 125


@pytest.mark.slow
def test_bisect_names_the_breaking_commit_and_restores_the_checkout(checkout, repro_script):
    repo, shas = checkout
    result = bisect(CELL, repo, shas["good"], shas["head"], script=repro_script)
    assert result.commit == shas["breaking"], result.output
    assert result.subject == "batched_mm: rescale the output"
    assert _git(repo, "rev-parse", "HEAD").strip() == shas["head"]  # bisect reset
    assert "max relative error" in result.output


@pytest.mark.slow
def test_bisect_fixed_finds_the_commit_that_fixed_it(checkout, repro_script):
    repo, shas = checkout
    # Reversed roles: at `breaking` the cell fails; at `fixed_import`... the failure is absent in its past, so
    # bisect from a failing commit (old) to a passing one (new) on a branch that reverts the bug.
    _git(repo, "checkout", "-q", "-b", "fix", shas["head"])
    fixed = _commit(repo, "batched_mm: drop the rescale", version="5.99.2.dev0")
    _commit(repo, "more docs", version="5.99.3.dev0")
    try:
        result = bisect(CELL, repo, shas["breaking"], "fix", script=repro_script, fixed=True)
    finally:
        _git(repo, "checkout", "-q", shas["head"])
    assert result.commit == fixed, result.output
