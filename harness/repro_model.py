"""Repro scripts of model-scope cells: a tiny random causal LM of the cell's family, the harness's model checks.

What harness/model_run.py does, in its order, raising at the first failure: save_pretrained a tiny
model, from_pretrained it in every documented form (the dispatch spy of harness/tf_dispatch.py proves what
ran), switch backends at runtime, the per-sub-config dict (layout default), the compiled whole-model
forward per token count against the eager uncompiled reference plus one profiled call (which ops ran), and
generate() with a static cache. The checks are harness/model_checks.py and harness/model_generate.py,
inlined; graph breaks and recompiles are not collected.
"""

from __future__ import annotations

from typing import Any

from harness.repro_kernel import (DISPATCH_EVIDENCE, TF_DISPATCH_GLUE, compile_expression, evidence_constants,
                                  experts_key, spec_text)
from harness.repro_source import Script, section

_NO_SIGNALS = '''class NoSignals:
    """Stand-in for the harness's SignalCollector around generate(): this script collects no signals."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None

    def result(self):
        return {}'''


def imports() -> list[str]:
    """The script's own imports (inlined code brings the rest)."""
    return ["import os", "import re", "import shutil", "import sys", "import tempfile", "import types", "",
            "import torch", "import transformers", "from torch.profiler import ProfilerActivity, profile", ""]


def add_model(script: Script) -> None:
    """Add the families, the dispatch spy, the model checks, generate() and the profiler evidence check."""
    script.module("harness.tf_families", "transformers model families per layout")
    script.module("harness.tf_dispatch", "which experts function each experts module called")
    script.add(TF_DISPATCH_GLUE, "", "", _NO_SIGNALS, "", "")
    script.module("harness.model_checks", "the uncompiled checks")
    script.module("harness.model_generate", "generate() with a static cache")
    script.add(section("harness/cell_run.py: the profiler evidence check, device sync"))
    script.function("harness.cell_run", "dispatch_proof")
    script.function("harness.cell_run", "_sync")
    script.add(DISPATCH_EVIDENCE, "", "")


def model_main(spec: dict[str, Any]) -> str:
    """main() of a model cell: the checks of harness/model_run.py in order, raising at the first failure."""
    from harness import model_run

    key = experts_key(spec)
    expected, forbidden = model_run.MODEL_EVIDENCE.get(key, ((), ()))
    return f'''# The backend under test: every experts module dispatches on this key ('eager': the class's own forward).
EXPERTS_IMPLEMENTATION = {key!r}
{evidence_constants(expected, forbidden)}
{spec_text(spec)}


def compiled_forward(model, reference, device) -> None:
    """The whole model's forward as the cell compiles it, once per token count, logits vs the reference."""
    shape, tolerance = SPEC["shape"], SPEC["tolerance"]
    forward = {compile_expression(spec, "model.forward")}
    with torch.no_grad():
        for call, tokens in enumerate(shape["tokens"]):
            ids = input_ids(SPEC["seed"], tokens, call, device, VOCAB)
            logits = forward(input_ids=ids, use_cache=False).logits  # a compile or runtime failure raises here
            rel = relative_error(logits, reference(input_ids=ids, use_cache=False).logits)
            print(f"compiled forward, call {{call}} ({{tokens}} tokens): logits max relative error {{rel:.3g}} "
                  f"(tolerance {{tolerance:g}})")
            if rel > tolerance:
                raise AssertionError(f"call {{call}} ({{tokens}} tokens): logits max relative error {{rel:.3g}} > "
                                     f"tolerance {{tolerance:g}}")
        ids = input_ids(SPEC["seed"], shape["tokens"][0], 0, device, VOCAB)
        ops, error = dispatch_evidence(lambda: forward(input_ids=ids, use_cache=False), device)
    if error:
        raise CheckFailed(error["type"], f"profiled compiled call: {{error['message']}}")
    print(f"compiled forward, profiled call: ops {{ops}}")


def main() -> int:
    """Build a tiny random model of the cell's family and run the harness's model-level checks on it."""
    cell, shape, seed, key = SPEC["cell"], SPEC["shape"], SPEC["seed"], EXPERTS_IMPLEMENTATION
    device, dtype = torch.device(cell["device"]), getattr(torch, cell["dtype"])
    print(f"torch {{torch.__version__}}, transformers {{transformers.__version__}} "
          f"({{os.path.dirname(transformers.__file__)}}), device {{device}}, cell {{cell}}")
    folder = tempfile.mkdtemp(prefix="repro-model-")
    checks = []
    try:
        path = build_checkpoint(family(cell["layout"]), shape, seed, folder)
        reference = load(path, "eager", dtype, device)  # the eager experts, uncompiled, in the cell's dtype
        print(f"model {{type(reference).__name__}} saved and reloaded from {{path}}")
        probe = input_ids(seed, 6, 99, device, VOCAB)
        with torch.no_grad():
            probe_ref = reference(input_ids=probe, use_cache=False).logits
        model = check_load_forms(path, key, dtype, device, probe, checks)
        check_runtime_switch(model, key, probe, probe_ref, SPEC["tolerance"], checks)
        if cell["layout"] == "default":
            check_subconfigs(key, shape, seed, folder, dtype, device, checks)
        print("uncompiled checks passed: " + ", ".join(check["check"] for check in checks))
        compiled_forward(model, reference, device)
        prompt = input_ids(seed, 5, 98, device, VOCAB)
        result = run_generate(model, key, cell, prompt, NoSignals())
        print(f"generate: {{result}}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("did not reproduce: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''
