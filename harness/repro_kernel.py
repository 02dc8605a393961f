"""Repro scripts of kernel-scope cells: the cell's experts module, the backend, inputs, oracle, inference main.

Per source, the script builds the module the harness builds: our `Experts` (backends/experts.py) with the
reference backend inlined, or a user backend imported by its dotted path (it is the user's code), or
transformers' own experts class of the cell's family (harness/tf_families.py) with
`config._experts_implementation` set to the backend's key, so the call goes through transformers' dispatch.
Weights, inputs, the float64 oracle and the comparison are the harness's own code, inlined.
The harness's dispatch proof (spy, profiler evidence) and signal collection are not repeated.
"""

from __future__ import annotations

import json
import pprint
from typing import Any

from harness.errors import HarnessError
from harness.matrix import resolve_impl
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

# The oracle (backends/oracle.py) tells our Experts' gate from a model-specific one; transformers cells have none.
_EXPERTS_STAND_IN = '''class Experts:
    """Stand-in for backends/experts.py's Experts, which the oracle names: transformers cells do not build one."""

    def _apply_gate(self, gate_up_out):
        raise NotImplementedError'''


def imports(spec: dict[str, Any]) -> list[str]:
    """The script's own imports (inlined code brings the rest)."""
    lines = ["import copy"] if spec["cell"]["phase"] == "training" else []
    lines += ["import os", "import sys", "import types", "", "import torch"]
    if spec["cell"]["source"] == "transformers":
        lines.append("import transformers")
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
    """The experts_implementation key a transformers cell's backend names (its shim in source_transformers.py)."""
    key = getattr(resolve_impl(spec["impl"]), "experts_implementation", None)
    if not isinstance(key, str):
        raise HarnessError(f"impl {spec['impl']!r} of a transformers backend names no experts implementation",
                           key="impl")
    return key


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
    print("did not reproduce: every call passed")
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
    """transformers' experts class of the cell's family, built and seeded as harness/source_transformers.py does."""
    key = experts_key(spec)
    script.module("harness.tf_families", "transformers model families per layout")
    script.add(section("harness/source_transformers.py: the experts module and its seeded weights"))
    script.function("harness.source_transformers", "build_experts")
    script.function("harness.source_transformers", "init_experts")
    script.add(_EXPERTS_STAND_IN, "", "",
               "# The backend under test: transformers' experts forward dispatches on this key ('eager': the class's "
               f"own forward).\nEXPERTS_IMPLEMENTATION = {key!r}", "", "", _VERSIONS["transformers"], "", "",
               '''def build_subject(device, dtype):
    """transformers' experts module of the cell's family, configured for the backend, and its routing shape."""
    module, fam = build_experts(SPEC, EXPERTS_IMPLEMENTATION, device, dtype)
    return types.SimpleNamespace(module=module, dense_routing=fam.dense_routing)''', "")
    return "module(hidden_states, top_k_index, top_k_weights)  # dispatches on config._experts_implementation"
