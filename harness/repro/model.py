"""Repro scripts of model-scope cells: harness/measure/model_run.py's `run_model_cell`, inlined and folded to the cell.

What the harness does, in its order: save_pretrained a tiny model of the cell's family, from_pretrained it in
every documented form (the dispatch spy of harness/sources/dispatch.py proves what ran), switch backends at
runtime, the per-sub-config dict (layout default), the compiled whole-model forward per token count against
the eager uncompiled reference plus one profiled call (which ops ran), and generate() with a static cache.
All of it is the harness's own code (harness/measure/model_run.py, model_checks.py, model_generate.py, ...); written
for the script are `main` (versions, then observed vs expected) and the stand-ins of harness/repro/kernel.py
(error records print the traceback, paths stay as they are); signals are collected as the harness does.
"""

from __future__ import annotations

from typing import Any

from harness.repro.kernel import ERROR_RECORD, MAIN_GUARD, PORTABLE_TEXT, TF_VERSIONS, facts, report_text
from harness.repro.source import Script

MAIN = '''
def main(spec):
    print(versions(), flush=True)  # before any traceback
    enable_logs()  # the recompile and CUDA-graph logs SignalCollector reads, on as in the harness's executors
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
    script = Script(facts(spec), select={"FAMILIES": (spec["cell"]["layout"],)}, drop_calls={"check_imported_source"})
    for name in ("os", "platform", "sys", "torch", "traceback", "transformers"):
        script.add_import(name)
    script.glue(TF_VERSIONS + ERROR_RECORD + PORTABLE_TEXT, "harness.repro.kernel")
    script.glue(report_text(spec) + MAIN + MAIN_GUARD, "harness.measure.model_run", "harness.measure.signals")
    return script
