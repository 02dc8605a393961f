"""Repro scripts of kernel-scope cells: the cell's experts module, the backend, inputs, oracle, inference main.

Per source, the script builds the module the harness builds: our `Experts` (backends/experts.py) with the
reference backend inlined, or a user backend imported by its dotted path (it is the user's code), or
transformers' own experts class of the cell's family (harness/tf_families.py) with
`config._experts_implementation` set to the backend's key, so the call goes through transformers' dispatch.
Weights, inputs, the float64 oracle and the comparison are the harness's own code, inlined.
Transformers cells repeat the harness's dispatch proof: the uncompiled probe call under the spy of
harness/tf_dispatch.py, then profiler evidence of one more call after the cell's calls; a wrong dispatch raises
MisDispatch as in the harness. Signal collection (graph breaks, recompiles, ...) is not repeated.
"""

from __future__ import annotations

import json
import pprint
from typing import Any

from harness.repro_source import Script, section

_REFERENCE_MODULE = "backends.reference"

_VERSIONS = {
    "torch": '''def versions() -> str:
    """The versions a bug report needs."""
    return f"torch {torch.__version__}"''',
    "transformers": '''def versions() -> str:
    """The versions a bug report needs, and which transformers was imported (a checkout on PYTHONPATH?)."""
    return (f"torch {torch.__version__}, transformers {transformers.__version__} "
            f"({os.path.dirname(transformers.__file__)})")''',
}

# The harness's code calls the spy as tf_dispatch.X (harness/source_transformers.py, harness/model_checks.py).
TF_DISPATCH_GLUE = ("tf_dispatch = types.SimpleNamespace(spy=spy, check=check, MisDispatch=MisDispatch, "
                    "experts_modules=experts_modules)")


def evidence_constants(expected: tuple[str, ...], forbidden: tuple[str, ...]) -> str:
    """EVIDENCE and INTERESTING_OP for dispatch_evidence() in a script."""
    from harness import signals

    return ("# Profiler evidence that the backend ran, as the harness checks it: (ops that must appear, ops of "
            f"another backend).\nEVIDENCE = {(expected, forbidden)!r}\n"
            f"INTERESTING_OP = re.compile({signals.INTERESTING_OP.pattern!r})  # the op names the harness keeps")


# The harness's second dispatch proof (harness/cell_run.py: SignalCollector.profile, then dispatch_proof).
DISPATCH_EVIDENCE = '''def dispatch_evidence(call, device):
    """(ops, error or None): the op names the harness keeps from one call under the profiler, against EVIDENCE."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        call()
        _sync(device)
    ops = sorted({event.name for event in prof.events() if INTERESTING_OP.search(event.name)})
    return ops, dispatch_proof(types.SimpleNamespace(expected_ops=EVIDENCE[0], forbidden_ops=EVIDENCE[1]), ops)[1]'''

# The oracle (backends/oracle.py) tells our Experts' gate from a model-specific one; transformers cells have none.
_EXPERTS_STAND_IN = '''class Experts:
    """Stand-in for backends/experts.py's Experts, which the oracle names: transformers cells do not build one."""

    def _apply_gate(self, gate_up_out):
        raise NotImplementedError'''


def imports(spec: dict[str, Any]) -> list[str]:
    """The script's own imports (inlined code brings the rest)."""
    transformers = spec["cell"]["source"] == "transformers"
    lines = ["import copy"] if spec["cell"]["phase"] == "training" else []
    lines += ["import os", *(["import re"] if transformers else []), "import sys", "import types", "",
              "import torch"]
    if transformers:  # the dispatch proof's profiled call
        lines += ["import transformers", "from torch.profiler import ProfilerActivity, profile"]
    return lines + [""]


def add_subject(script: Script, spec: dict[str, Any]) -> str:
    """Add versions() and build_subject(device, dtype) to `script`; return the expression that calls the backend."""
    if spec["cell"]["source"] == "transformers":
        return _transformers_subject(script, spec)
    return _own_subject(script, spec)


def add_shared(script: Script) -> None:
    """Add the float64 oracle, input generation and output comparison, as the harness runs them."""
    script.module("backends.oracle", "the float64 oracle")
    script.add(section("harness/cell_run.py: inputs, comparison and device sync, as the harness does them"))
    for name in ("_inputs", "_compare", "_sync"):
        script.function("harness.cell_run", name)


def experts_key(spec: dict[str, Any]) -> str:
    """The experts_implementation key of a transformers cell: its backend's name."""
    return spec["cell"]["backend"]


def compile_expression(spec: dict[str, Any], target: str = "forward") -> str:
    """How the cell wraps `target`: not at all (uncompiled) or torch.compile with its mode and fullgraph."""
    cell = spec["cell"]
    if cell["mode"] == "uncompiled":
        return target
    mode = None if cell["mode"] == "default" else cell["mode"]
    return f"torch.compile({target}, mode={mode!r}, fullgraph={bool(cell['fullgraph'])})"


def spec_text(spec: dict[str, Any]) -> str:
    """The cell's spec as a SPEC = {...} assignment."""
    return f"SPEC = {pprint.pformat(spec, width=110, sort_dicts=False)}"


# After the cell's calls, a transformers cell checks what ran, as harness/cell_run.py does.
_EVIDENCE_CALL = ('        check_evidence(compiled, _inputs(SPEC, subject, shape["tokens"][0], device, dtype, 0), '
                  'device)\n')


def inference_main(spec: dict[str, Any], call: str) -> str:
    """main() of an inference cell: one call per token count, output against the oracle, stop at a failure."""
    return f'''{spec_text(spec)}


def main() -> int:
    """Build the cell's module, compile the backend as the cell does, call it once per token count."""
    cell, shape = SPEC["cell"], SPEC["shape"]
    device, dtype = torch.device(cell["device"]), getattr(torch, cell["dtype"])
    print(f"{{versions()}}, device {{device}}, cell {{cell}}")
    torch.manual_seed(SPEC["seed"])
    subject = build_subject(device, dtype)
    module = subject.module

    def forward(hidden_states, top_k_index, top_k_weights):
        return {call}

    compiled = {compile_expression(spec)}
    with torch.no_grad():  # inference cells run as generate() does
        for call, tokens in enumerate(shape["tokens"]):
            args = _inputs(SPEC, subject, tokens, device, dtype, call)
            out = compiled(*args)  # a compile or runtime failure raises here, with its traceback
            problem, rel = _compare(out, oracle_forward(module, *args), tokens, shape["hidden"], dtype)
            if problem:
                raise AssertionError(f"call {{call}} ({{tokens}} tokens): {{problem}}")
            print(f"call {{call}} ({{tokens}} tokens): max relative error {{rel:.3g}} "
                  f"(tolerance {{SPEC['tolerance']:g}})")
            if rel > SPEC["tolerance"]:
                raise AssertionError(f"call {{call}} ({{tokens}} tokens): max relative error {{rel:.3g}} > "
                                     f"tolerance {{SPEC['tolerance']:g}}")
{_EVIDENCE_CALL if spec["cell"]["source"] == "transformers" else ""}    print("did not reproduce: every call passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def _own_subject(script: Script, spec: dict[str, Any]) -> str:
    """Reference backends inlined (only what the backend needs), a user backend imported; our Experts module."""
    module_name, _, function = spec["impl"].partition(":")
    if module_name == _REFERENCE_MODULE:
        script.reference(function)
        script.add(f"REFERENCE_BACKENDS = {{{json.dumps(spec['cell']['backend'])}: {function}}}", "")
    else:
        script.add(f"from {module_name} import {function}  # the backend under test (your code)",
                   "REFERENCE_BACKENDS = {}", "")
    script.module("backends.experts", "the test experts module")
    script.add(_VERSIONS["torch"], "", "", '''def build_subject(device, dtype):
    """The cell's experts module (backends/experts.py, the cell's layout, seeded weights) and its routing shape."""
    cell, shape = SPEC["cell"], SPEC["shape"]
    module = make_experts(shape["experts"], shape["hidden"], shape["intermediate"], layout=cell["layout"],
                          dtype=dtype, device=device, seed=SPEC["seed"])
    return types.SimpleNamespace(module=module, dense_routing=cell["layout"] in DENSE_ROUTING_LAYOUTS)''', "")
    return f"{function}(module, hidden_states, top_k_index, top_k_weights)"


def _transformers_subject(script: Script, spec: dict[str, Any]) -> str:
    """transformers' experts class of the cell's family, built, seeded and dispatch-checked as the harness does."""
    from harness import source_transformers

    key = experts_key(spec)
    script.module("harness.tf_families", "transformers model families per layout")
    script.add(section("harness/source_transformers.py: the experts module and its seeded weights"))
    script.function("harness.source_transformers", "build_experts")
    script.function("harness.source_transformers", "init_experts")
    script.module("harness.tf_dispatch", "which experts function the experts module called")
    script.add(TF_DISPATCH_GLUE, "", "")
    script.add(section("harness/source_transformers.py: the dispatch proof"))
    for name in ("probe_dispatch", "_probe"):
        script.function("harness.source_transformers", name)
    script.add(section("harness/cell_run.py: the profiler evidence check"))
    script.function("harness.cell_run", "dispatch_proof")
    expected, forbidden = source_transformers.evidence(key, spec["cell"]["mode"])
    script.add(_EXPERTS_STAND_IN, "", "",
               "# The backend under test: transformers' experts forward dispatches on this key ('eager': the class's "
               f"own forward).\nEXPERTS_IMPLEMENTATION = {key!r}", evidence_constants(expected, forbidden),
               "", "", _VERSIONS["transformers"], "", "", DISPATCH_EVIDENCE, "", "",
               '''def build_subject(device, dtype):
    """transformers' experts module of the cell's family, configured for the backend; MisDispatch unless an
    uncompiled probe call reaches that backend (the harness's first dispatch proof)."""
    module, fam = build_experts(SPEC, EXPERTS_IMPLEMENTATION, device, dtype)
    probe_dispatch(SPEC, module, fam, EXPERTS_IMPLEMENTATION, device, dtype)
    return types.SimpleNamespace(module=module, dense_routing=fam.dense_routing)


def check_evidence(compiled, args, device) -> None:
    """The harness's second dispatch proof: the ops one more call runs, under the profiler."""
    ops, error = dispatch_evidence(lambda: compiled(*args), device)
    if error:
        raise MisDispatch(f"profiled call: {error['message']}")
    print(f"profiled call: ops {ops}")''', "")
    return "module(hidden_states, top_k_index, top_k_weights)  # dispatches on config._experts_implementation"
