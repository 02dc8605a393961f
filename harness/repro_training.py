"""Repro scripts of training cells: forward + backward under compile, gradients against the float64 oracle.

The step, the oracle's differentiable float64 step, the cotangent and the gradient comparison are
harness/training.py's own functions, inlined; main() runs them once per token count as `_train_all` does
and raises at the first failure instead of recording it.
"""

from __future__ import annotations

from typing import Any

from harness.repro_kernel import compile_expression, spec_text
from harness.repro_source import Script, section


def add_training(script: Script) -> None:
    """Add harness/training.py's step, oracle step, cotangent and gradient comparison."""
    script.add(section("harness/training.py: forward + backward, the oracle's gradients, their comparison"))
    for name in ("_step", "_oracle_step", "_cotangent", "_compare_grads"):
        script.function("harness.training", name)


def training_main(spec: dict[str, Any], call: str) -> str:
    """main() of a training cell: one forward + backward per token count, output and gradients vs the oracle."""
    return f'''{spec_text(spec)}


def main() -> int:
    """Build the cell's module, compile the backend as the cell does, train-step it once per token count."""
    cell, shape = SPEC["cell"], SPEC["shape"]
    device, dtype = torch.device(cell["device"]), getattr(torch, cell["dtype"])
    tolerance = SPEC["tolerance"]
    print(f"{{versions()}}, device {{device}}, cell {{cell}}")
    torch.manual_seed(SPEC["seed"])
    subject = build_subject(device, dtype)
    module = subject.module
    reference = copy.deepcopy(module).to(torch.float64)  # the oracle's float64 copy, made before compiling

    def forward(hidden_states, top_k_index, top_k_weights):
        return {call}

    compiled = {compile_expression(spec)}
    with torch.enable_grad():  # training cells: forward and backward
        for call, tokens in enumerate(shape["tokens"]):
            # A compile or runtime failure (forward or backward) raises here, with its traceback.
            out, grads, args = _step(SPEC, subject, compiled, device, dtype, call)
            ref_out, ref_grads = _oracle_step(SPEC, reference, args, call)
            problem, rel = _compare(out, ref_out, tokens, shape["hidden"], dtype)
            grad_problem, grad_errors = _compare_grads(grads, ref_grads)
            problem = problem or grad_problem
            if problem:
                raise AssertionError(f"call {{call}} ({{tokens}} tokens): {{problem}}")
            print(f"call {{call}} ({{tokens}} tokens): output max relative error {{rel:.3g}}, gradients max relative "
                  f"error {{max(grad_errors.values(), default=0.0):.3g}} (tolerance {{tolerance:g}})")
            for name, value in grad_errors.items():
                print(f"    gradient of {{name}}: {{value:.3g}}")
            over = {{name: value for name, value in {{"output": rel, **grad_errors}}.items() if value > tolerance}}
            if over:
                name, value = max(over.items(), key=lambda item: item[1])
                raise AssertionError(f"call {{call}} ({{tokens}} tokens): max relative error of {{name}} "
                                     f"{{value:.3g}} > tolerance {{tolerance:g}}")
    print("did not reproduce: every call passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''
