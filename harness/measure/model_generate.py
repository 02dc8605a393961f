"""generate() in a model-level cell: compiled forward, static cache, the documented decode-time switch.

The docs: with experts_implementation="grouped_mm" on GPU, generate() switches to "batched_mm" for the
decode stage; on CPU grouped_mm stays active. transformers does it with set_experts_implementation
around the decoding loop, so the check records every set_experts_implementation call generate() makes,
and afterwards checks that the original implementation is back. Recompiles and graph breaks of the
generate() call are reported separately from the forward check's.
"""

from __future__ import annotations

from typing import Any

from harness.measure.model_checks import CheckFailed, check_configured

NEW_TOKENS = 4
PROMPT_TOKENS = 5


def run_generate(model, key: str, cell: dict[str, Any], ids, collector) -> dict[str, Any]:
    """generate() with a static cache (compiled per the cell's mode) under `collector`; CheckFailed on a broken claim."""
    from transformers.generation.configuration_utils import CompileConfig

    original = model.get_experts_implementation()
    calls: list[Any] = []
    set_impl = model.set_experts_implementation

    def _recording(value):
        calls.append(value)
        return set_impl(value)

    model.set_experts_implementation = _recording  # instance attribute: generate() calls self.set_...
    kwargs: dict[str, Any] = {"max_new_tokens": NEW_TOKENS, "do_sample": False, "cache_implementation": "static",
                              "pad_token_id": 0}
    if cell["mode"] == "uncompiled":
        kwargs["disable_compile"] = True
    else:
        config = CompileConfig(fullgraph=bool(cell["fullgraph"]),
                               mode=None if cell["mode"] == "default" else cell["mode"])
        config._compile_all_devices = True  # generate() auto-compiles on cuda only unless told
        kwargs["compile_config"] = config
    try:
        with collector:
            out = model.generate(ids, **kwargs)
    finally:
        del model.set_experts_implementation
    expect_switch = model.device.type != "cpu" and "grouped_mm" in original.values()
    switched = {k: "batched_mm" if v == "grouped_mm" else v for k, v in original.items()}
    result = {"switch_calls": calls, "expected_switch": expect_switch, "new_tokens": int(out.shape[1] - ids.shape[1]),
              "compiled": cell["mode"] != "uncompiled" and getattr(model, "_compiled_call", None) is not None,
              "restored": model.get_experts_implementation() == original}
    result.update({name: value for name, value in collector.result().items()
                   if name in ("recompiles", "recompile_reasons", "graph_breaks", "graph_break_reasons",
                               "unique_graphs", "cudagraph_skips")})
    if expect_switch and calls[:1] != [switched]:
        raise CheckFailed("DecodeSwitch", f"generate() on {model.device.type} with {original} did not switch to "
                                          f"batched_mm for decoding (set_experts_implementation calls: {calls})")
    if not expect_switch and any(call != original for call in calls):
        raise CheckFailed("DecodeSwitch", f"generate() on {model.device.type} with {original} switched the experts "
                                          f"implementation (calls: {calls}); the docs say it stays on CPU")
    if not result["restored"]:
        raise CheckFailed("NotRestored", f"after generate() the experts implementation is "
                                         f"{model.get_experts_implementation()}, was {original}")
    check_configured(model, key, "after generate()")
    return result
