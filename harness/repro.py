"""A standalone script that reruns one cell with only torch (and transformers) installed: what a bug report needs.

Every kind of cell has one: kernel inference (harness/repro_kernel.py), kernel training
(harness/repro_training.py), model scope (harness/repro_model.py). Reference backends are inlined from
backends/*.py (only the functions the cell's backend needs); transformers cells build transformers' own
classes; the harness code that builds weights and inputs and judges the outputs is inlined too
(harness/repro_source.py), so the script sees what the harness saw. A user backend is imported by its dotted
path (it is the user's code). Each script exits 1 with the traceback when the failure reproduces, 0 when
everything passes.
"""

from __future__ import annotations

from typing import Any

from harness.cells import Cell, cell_spec
from harness.errors import HarnessError
from harness.matrix import Matrix
from harness.repro_source import Script

_REFERENCE_PREFIX = "backends.reference:"


def script(matrix: Matrix, cell: Cell, observed: dict[str, Any] | None = None, env_label: str | None = None) -> str:
    """The text of the standalone reproduction script of `cell`."""
    spec = cell_spec(matrix, cell)
    if cell.scope == "model":  # as harness/cell_run.py: scope decides before phase
        body = _model_body(cell, spec)
    elif cell.scope == "kernel":
        body = _kernel_body(spec)
    else:
        raise HarnessError(f"{cell.id}: no repro script for scope {cell.scope!r}", key="CELL_ID")
    # Postponed annotations: the inlined code keeps its type hints without importing `typing` names.
    parts = [_header(cell, spec, matrix, observed, env_label), "from __future__ import annotations", "", *body]
    return "\n".join(parts).rstrip("\n") + "\n"


def _kernel_body(spec: dict[str, Any]) -> list[str]:
    from harness.repro_kernel import add_shared, add_subject, imports, inference_main

    script = Script()
    script.add(*imports(spec))
    call = add_subject(script, spec)
    add_shared(script)
    if spec["cell"]["phase"] == "training":
        from harness.repro_training import add_training, training_main

        add_training(script)
        script.add(training_main(spec, call))
    else:
        script.add(inference_main(spec, call))
    return script.parts


def _model_body(cell: Cell, spec: dict[str, Any]) -> list[str]:
    from harness.repro_model import add_model, imports, model_main

    if cell.source != "transformers":
        raise HarnessError(f"{cell.id}: model-scope cells run transformers backends only (a whole transformers "
                           f"model); this one is {cell.source}", key="CELL_ID")
    script = Script()
    script.add(*imports())
    add_model(script)
    script.add(model_main(spec))
    return script.parts


def _header(cell: Cell, spec, matrix: Matrix, observed, env_label) -> str:
    lines = [f"Standalone reproduction of compile-matrix cell {cell.id}.", ""]
    if observed:
        error = observed.get("error") or {}
        what = observed["status"] + (f": {error.get('type')}: {error.get('message')}" if error else "")
        lines.append(f"Observed: {what}")
        if env_label:
            lines.append(f"      on: {env_label}")
    transformers = cell.source == "transformers"
    backend = spec["impl"] or f"experts_implementation={cell.backend!r}"
    lines += [f"Backend: {backend} ({cell.source}); mode={cell.mode}, dtype={cell.dtype}, "
              f"fullgraph={cell.fullgraph}, device={cell.device}, shape={cell.shape} {spec['shape']}, "
              f"layout={cell.layout}, scope={cell.scope}, phase={cell.phase}.",
              f"Harness command: python -m harness run --matrix {matrix.path} --cell {cell.id}"
              + (" [--transformers-src PATH]" if transformers else ""),
              ""]
    if transformers:
        lines += ["Needs only torch and transformers; run it as `python THIS_FILE`. To test a transformers checkout,",
                  "run `PYTHONPATH=CHECKOUT/src python THIS_FILE`: the first line printed names the versions and the",
                  "transformers folder imported."]
    else:
        lines.append("Needs only torch" + ("" if spec["impl"].startswith(_REFERENCE_PREFIX) else
                                           " and the backend's own package") + "; run it as `python THIS_FILE`.")
    what = "a check fails" if cell.scope == "model" else "the failure reproduces"
    every = "every check passes" if cell.scope == "model" else "every call passes"
    lines.append(f"Exit status: 1 (with the traceback) when {what}, 0 when {every}.")
    body = "\n".join(lines).replace('"""', "'''")
    return f'"""{body}\n"""'
