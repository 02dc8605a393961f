"""Repro scripts of model-scope cells: harness/measure/model_run.py's `run_model_cell`, inlined and folded to the cell.

What the harness does, in its order: save_pretrained a tiny model of the cell's family, from_pretrained it in
every documented form (the dispatch spy of harness/sources/dispatch.py proves what ran), switch backends at
runtime, the per-sub-config dict (layout default), the compiled whole-model forward per token count against
the eager uncompiled reference plus one profiled call (which ops ran), and generate() with a static cache.
All of it is the harness's own code (harness/measure/model_run.py, model_checks.py, model_generate.py, ...); written
for the script are `main` (versions, then observed vs expected) and the stand-ins of harness/repro/kernel.py
(error records print the traceback; no graph breaks or recompiles are collected).
"""

from __future__ import annotations

from typing import Any

from harness.repro.kernel import (ERROR_RECORD, GRAFT, MAIN_GUARD, SIGNAL_COLLECTOR, TF_VERSIONS, facts,
                                  report_text)
from harness.repro.source import Script

MAIN = '''
def main(spec):
    print(versions(), flush=True)  # before any traceback
    outcome = run_model_cell(spec)
    for check in outcome["signals"]["model_checks"]:
        print("model check:", check)
    for name in ("ops", "generate"):  # the profiled compiled call's ops, generate()'s result
        if name in outcome["signals"]:
            print(f"{name}: {outcome['signals'][name]}")
    return report(spec, outcome)
'''


def model_script(spec: dict[str, Any]) -> Script:
    """The script's code: run_model_cell and everything it calls, main and stand-ins."""
    script = Script(facts(spec), select={"FAMILIES": (spec["cell"]["layout"],)}, drop_calls={"check_imported_source"},
                    graft=GRAFT)
    for name in ("os", "platform", "sys", "torch", "traceback", "transformers"):
        script.add_import(name)
    script.glue(TF_VERSIONS + ERROR_RECORD + SIGNAL_COLLECTOR, "harness.repro.kernel", "harness.measure.signals")
    script.glue(report_text(spec) + MAIN + MAIN_GUARD, "harness.measure.model_run")
    return script
