"""Source `transformers`: source-tree selection, families, dispatch proof, kernel/training/model cells, matrix.yaml."""

from __future__ import annotations

import json
import os
import subprocess
import zlib
from types import SimpleNamespace

import pytest

from harness.errors import HarnessError
from harness.environment.transformers_src import ENV_VAR, describe, resolve_src
from tests.conftest import REPO_ROOT, load_cells, run_harness
from tests.mutants.moe_mutants import _link_dir, installed_package

transformers = pytest.importorskip("transformers")

DECODE = {"tokens": [1, 3], "hidden": 16, "intermediate": 8, "experts": 4, "top_k": 2, "routing": "uniform"}
PREFILL = {"tokens": [12, 7], "hidden": 16, "intermediate": 8, "experts": 4, "top_k": 2, "routing": "skewed"}
TOLERANCE = {"bfloat16": 3e-2, "float16": 5e-3, "float32": 1e-4}


def _spec(backend: str, layout: str = "default", mode: str = "uncompiled", dtype: str = "float32",
          shape: dict | None = None, scope: str = "kernel", phase: str = "inference") -> dict:
    cell = {"source": "transformers", "backend": backend, "mode": mode, "dtype": dtype,
            "fullgraph": None if mode == "uncompiled" else True, "device": "cpu", "shape": "s", "layout": layout,
            "scope": scope, "phase": phase}
    return {"cell": cell, "impl": None, "shape": shape or PREFILL,
            "tolerance": TOLERANCE[dtype], "max_recompiles": 1,
            "seed": zlib.crc32(json.dumps(cell, sort_keys=True).encode()) % 100_000}


# --- which transformers: --transformers-src and results.json -------------------------------------------------

def test_resolve_src_accepts_the_package_parent_or_a_checkout(tmp_path):
    (tmp_path / "checkout" / "src" / "transformers").mkdir(parents=True)
    (tmp_path / "checkout" / "src" / "transformers" / "__init__.py").write_text('__version__ = "9.9.9.dev0"\n')
    assert resolve_src(str(tmp_path / "checkout")) == str(tmp_path / "checkout" / "src")
    assert resolve_src(str(tmp_path / "checkout" / "src")) == str(tmp_path / "checkout" / "src")
    with pytest.raises(HarnessError) as err:
        resolve_src(str(tmp_path))
    assert err.value.key == "--transformers-src" and "no transformers package" in err.value.render()


def test_describe_installed_and_source_tree(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    installed = describe()
    assert installed["version"] == transformers.__version__ and installed["from_src"] is False
    assert installed["path"] == os.path.dirname(os.path.abspath(transformers.__file__))
    package = tmp_path / "repo" / "src" / "transformers"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "9.9.9.dev0"\n')
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "repo" / "src"))
    info = describe()
    assert (info["version"], info["path"], info["git_commit"], info["from_src"]) == (
        "9.9.9.dev0", str(package), None, True)


def test_describe_reports_the_checkout_commit_and_dirtiness(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    package = repo / "src" / "transformers"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "9.9.9.dev0"\n')
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "x"]):
        subprocess.run(git + args, check=True, capture_output=True)
    sha = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    monkeypatch.setenv(ENV_VAR, str(repo / "src"))
    assert describe()["git_commit"] == sha
    (package / "__init__.py").write_text('__version__ = "9.9.9.dev1"\n')
    assert describe()["git_commit"] == sha + "-dirty"


def test_a_transformers_imported_from_elsewhere_fails_setup(monkeypatch, tmp_path):
    from harness.sources.transformers_experts import check_imported_source

    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(RuntimeError, match="not from the --transformers-src tree"):
        check_imported_source()


# --- kernel subjects: families, shims, dispatch proof ------------------------------------------------------

@pytest.mark.parametrize("layout, cls", [("default", "Qwen2MoeExperts"), ("gpt_oss", "GptOssExperts"),
                                         ("non_gated", "NemotronHExperts"), ("deepseek_v2", "DeepseekV2Experts")])
def test_every_family_builds_transformers_experts_class(layout, cls):
    import torch

    from harness.sources.transformers_experts import load_subject

    subject = load_subject(_spec("grouped_mm", layout), torch.device("cpu"), torch.float32)
    assert type(subject.module).__name__ == cls
    assert subject.module.config._experts_implementation == "grouped_mm"
    assert subject.info["experts_class"].endswith(cls) and subject.dense_routing == (layout == "deepseek_v2")
    assert subject.expected_ops == ("grouped_mm",) and subject.forbidden_ops == ("bmm",)


def test_layout_without_family_and_bad_impls_are_errors():
    import torch

    from harness.sources.transformers_experts import implementation_key, load_subject

    with pytest.raises(ValueError, match="no transformers family"):
        load_subject(_spec("eager", "transposed"), torch.device("cpu"), torch.float32)
    with pytest.raises(KeyError, match="not registered in this transformers' ExpertsInterface"):
        implementation_key(_spec("no_such_kernel"))
    assert implementation_key(_spec("batched_mm")) == "batched_mm"


def test_the_matrix_finds_every_registered_implementation_without_importing_transformers():
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    from harness.environment.registered import registered_keys

    assert set(registered_keys()) == {"eager", *ALL_EXPERTS_FUNCTIONS}


def test_a_function_registered_under_the_wrong_key_is_a_misdispatch(monkeypatch):
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    from harness.measure.cell_run import run_cell

    # "batched_mm" silently runs grouped_mm's function: outputs agree, only the profiler evidence can tell.
    monkeypatch.setitem(ALL_EXPERTS_FUNCTIONS._global_mapping, "batched_mm", ALL_EXPERTS_FUNCTIONS["grouped_mm"])
    outcome = run_cell(_spec("batched_mm"))
    assert outcome["status"] == "runtime_error" and outcome["error"]["type"] == "MisDispatch"
    assert "ops of another backend ['grouped_mm']" in outcome["error"]["message"]
    assert outcome["signals"]["max_rel_error"] < 1e-5  # numerically right: without dispatch proof it would pass


def test_eager_that_calls_an_interface_function_is_a_misdispatch(monkeypatch):
    import torch
    from transformers.integrations import moe

    from harness.sources.transformers_experts import load_subject
    from harness.sources.dispatch import MisDispatch

    # A broken decorator that ignores "eager" and always dispatches to grouped_mm.
    real = moe.ExpertsInterface.get_interface
    monkeypatch.setattr(moe.ExpertsInterface, "get_interface",
                        lambda self, key, default: real(self, "grouped_mm", default))
    with pytest.raises(MisDispatch, match="expected eager, ran grouped_mm"):
        load_subject(_spec("eager"), torch.device("cpu"), torch.float32)


# --- cells in-process (uncompiled: no compile time) --------------------------------------------------------

@pytest.mark.parametrize("layout", ["default", "gpt_oss", "non_gated"])
@pytest.mark.parametrize("backend", ["eager", "batched_mm", "grouped_mm"])
def test_uncompiled_kernel_cells_pass_with_dispatch_evidence(backend, layout):
    from harness.measure.cell_run import run_cell

    outcome = run_cell(_spec(backend, layout, dtype="bfloat16"))
    assert outcome["status"] == "pass", outcome["error"]
    ops = outcome["signals"]["ops"]
    assert any({"eager": "::mm", "batched_mm": "bmm", "grouped_mm": "grouped_mm"}[backend] in op for op in ops)
    assert outcome["signals"]["grouped_mm_path"] == ("native" if backend == "grouped_mm" else None)


def test_deepseek_v2_dense_routing_weights_break_transformers_functions():
    from harness.measure.cell_run import run_cell

    batched = run_cell(_spec("batched_mm", "deepseek_v2"))
    assert batched["status"] == "runtime_error" and "must match the size" in batched["error"]["message"]
    for backend in ("grouped_mm", "eager"):
        outcome = run_cell(_spec(backend, "deepseek_v2"))
        assert outcome["status"] == "mismatch" and outcome["signals"]["max_rel_error"] > 0.1, outcome


def test_training_cell_compares_every_gradient_with_the_oracle():
    from harness.measure.cell_run import run_cell

    outcome = run_cell(_spec("grouped_mm", "gpt_oss", phase="training"))
    assert outcome["status"] == "pass", outcome["error"]
    errors = outcome["signals"]["grad_errors"]
    assert set(errors) == {"hidden_states", "routing_weights", "gate_up_proj", "gate_up_proj_bias", "down_proj",
                           "down_proj_bias"}
    assert max(errors.values()) < 1e-5


def test_training_catches_a_wrong_gradient(monkeypatch):
    import torch
    from transformers.integrations import moe

    from harness.measure.cell_run import run_cell

    class _WrongBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad * 1.5

    real = moe.batched_mm_experts_forward
    monkeypatch.setitem(moe.ALL_EXPERTS_FUNCTIONS._global_mapping, "batched_mm",
                        lambda self, h, i, w: real(self, _WrongBackward.apply(h), i, w))
    outcome = run_cell(_spec("batched_mm", phase="training"))
    assert outcome["status"] == "mismatch" and "hidden_states" in outcome["error"]["message"]
    assert outcome["signals"]["grad_errors"]["hidden_states"] > 0.3


def test_uncompiled_model_cell_runs_every_documented_form():
    from harness.measure.model_run import run_model_cell

    outcome = run_model_cell(_spec("grouped_mm", shape=DECODE, scope="model"))
    assert outcome["status"] == "pass", outcome["error"]
    checks = [check["check"] for check in outcome["signals"]["model_checks"]]
    assert checks == ["load_string", "load_dict_global", "runtime_switch", "per_subconfig", "compiled_forward",
                      "generate"]
    generate = outcome["signals"]["generate"]
    assert generate["switch_calls"] == [] and generate["restored"] and generate["new_tokens"] == 4


def test_generate_check_expects_the_decode_switch_off_cpu():
    from harness.measure.model_checks import CheckFailed
    from harness.measure.model_generate import run_generate

    class _FakeModel:
        """Just what run_generate touches; generate() either switches like transformers or not."""

        def __init__(self, switches: bool):
            self.device = SimpleNamespace(type="cuda")
            self.impl = {"": "grouped_mm"}
            self.switches = switches

        def get_experts_implementation(self):
            return dict(self.impl)

        def set_experts_implementation(self, value):
            self.impl = dict(value)

        def generate(self, ids, **kwargs):
            if self.switches:
                self.set_experts_implementation({"": "batched_mm"})
                self.set_experts_implementation({"": "grouped_mm"})
            return SimpleNamespace(shape=(1, ids.shape[1] + 4))

    class _Collector:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def result(self):
            return {"recompiles": 0}

    cell = {"mode": "uncompiled", "fullgraph": None}
    ids = SimpleNamespace(shape=(1, 5))
    import harness.measure.model_generate as model_generate

    original = model_generate.check_configured
    model_generate.check_configured = lambda *args: None
    try:
        result = run_generate(_FakeModel(switches=True), "grouped_mm", cell, ids, _Collector())
        assert result["switch_calls"] == [{"": "batched_mm"}, {"": "grouped_mm"}] and result["restored"]
        with pytest.raises(CheckFailed, match="did not switch"):
            run_generate(_FakeModel(switches=False), "grouped_mm", cell, ids, _Collector())
    finally:
        model_generate.check_configured = original


# --- matrix.yaml -----------------------------------------------------------------------------------------

def test_matrix_transformers_cells_only_on_family_layouts():
    from harness.cells.cell import expand_cells, expectation_for
    from harness.config.load import load_matrix
    from harness.sources.families import FAMILIES

    matrix = load_matrix(str(REPO_ROOT / "matrix.yaml"), import_backends=False)
    cells = [cell for cell in expand_cells(matrix) if cell.source == "transformers"]
    assert {cell.layout for cell in cells} == set(FAMILIES)
    assert {cell.scope for cell in cells} == {"kernel", "model"}
    assert {cell.phase for cell in cells} == {"inference", "training"}
    for cell in cells:
        expected = expectation_for(cell, matrix.rules)
        if cell.phase == "training":
            assert expected.expect == "observe"
        if cell.layout == "deepseek_v2" and cell.scope == "kernel":
            assert expected.expect == "observe"  # [T, E] routing weights: undocumented input
        elif cell.backend == "eager" and cell.fullgraph and cell.phase == "inference":
            assert expected.expect == "fail" and expected.statuses == ("compile_error",)


@pytest.mark.slow
def test_cli_runs_transformers_cells_from_a_source_tree(tmp_path):
    """End to end: `--source transformers --transformers-src TREE` on a few cells of matrix.yaml."""
    tree = tmp_path / "src"
    _link_dir(installed_package(), str(tree / "transformers"), skip=set())
    cells = ["transformers-batched_mm-uncompiled-float32-cpu-decode-gpt_oss",
             "transformers-grouped_mm-default-bfloat16-fullgraph-cpu-decode-non_gated",
             "transformers-eager-default-float32-fullgraph-cpu-decode",
             "transformers-grouped_mm-uncompiled-float32-cpu-prefill-deepseek_v2"]
    proc = run_harness("run", "--source", "transformers", "--transformers-src", str(tree), "--out",
                       str(tmp_path / "out"), "-n", "1", *[arg for cell in cells for arg in ("--cell", cell)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = load_cells(tmp_path / "out")
    statuses = {cell_id: (cell["status"], cell["verdict"]) for cell_id, cell in results.items()}
    assert statuses == {cells[0]: ("pass", "ok"), cells[1]: ("pass", "ok"), cells[2]: ("compile_error", "ok"),
                        cells[3]: ("mismatch", "ok")}
    assert results[cells[1]]["signals"]["grouped_mm_path"] == "native"
    environment = json.loads((tmp_path / "out" / "results.json").read_text())["environment"]
    assert environment["transformers_path"] == "<transformers-src>/transformers"  # portable: no absolute path
    assert environment["transformers"] == transformers.__version__ and environment["transformers_from_src"]


@pytest.mark.parametrize("mode", ["uncompiled", "default"])
def test_a_hub_kernel_backend_without_its_prerequisite_is_not_applicable(mode):
    import importlib.util

    from harness.measure.cell_run import run_cell

    if importlib.util.find_spec("kernels") is not None:
        pytest.skip("the `kernels` package is installed here: deepgemm would try to load its hub kernel")
    outcome = run_cell(_spec("deepgemm", mode=mode, dtype="bfloat16"))
    assert outcome["status"] == "skipped" and outcome["error"]["type"] == "MissingPrerequisite"
    assert "kernels" in outcome["error"]["message"] + outcome["error"].get("detail", "")


def test_a_documented_backend_raising_import_error_still_fails(monkeypatch):
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    from harness.measure.cell_run import run_cell

    def broken(*args, **kwargs):
        raise ImportError("a documented backend must not hide behind a missing prerequisite")

    monkeypatch.setitem(ALL_EXPERTS_FUNCTIONS._global_mapping, "batched_mm", broken)
    outcome = run_cell(_spec("batched_mm"))
    assert outcome["status"] == "runtime_error"
