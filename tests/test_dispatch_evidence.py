"""The profiled call's dispatch proof: another backend's ops are a MisDispatch; missing ops only where visible."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.measure import profiler_probe
from harness.measure.steps import dispatch_proof

GROUPED = SimpleNamespace(expected_ops=("grouped_mm",), forbidden_ops=("bmm",))


def test_this_torch_answers_whether_compiled_custom_ops_are_visible():
    import torch

    visible = profiler_probe.custom_ops_visible_when_compiled()
    assert isinstance(visible, bool)
    if torch.__version__.startswith("2.13."):
        assert visible  # 2.13 emits an event for a custom op called from a compiled graph


@pytest.mark.parametrize("visible", [True, False])
def test_missing_expected_ops_are_a_misdispatch_only_where_the_profiler_could_show_them(monkeypatch, visible):
    monkeypatch.setattr(profiler_probe, "custom_ops_visible_when_compiled", lambda: visible)
    signals: dict = {}
    status, error = dispatch_proof(GROUPED, ["aten::mm"], signals, compiled=True)
    if visible:
        assert status == "runtime_error" and error["type"] == "MisDispatch" and "not seen" in error["message"]
    else:
        assert (status, error) == ("pass", None)
        assert "without a profiler event" in signals["dispatch_evidence"]


def test_another_backends_ops_are_a_misdispatch_whatever_the_profiler_hides(monkeypatch):
    monkeypatch.setattr(profiler_probe, "custom_ops_visible_when_compiled", lambda: False)
    status, error = dispatch_proof(GROUPED, ["aten::bmm"], {}, compiled=True)
    assert status == "runtime_error" and "ops of another backend ['bmm']" in error["message"]


def test_uncompiled_calls_always_need_their_ops(monkeypatch):
    monkeypatch.setattr(profiler_probe, "custom_ops_visible_when_compiled", lambda: False)
    status, _ = dispatch_proof(GROUPED, ["aten::mm"], {}, compiled=False)
    assert status == "runtime_error"
