"""Repro scripts of kernel-scope cells (inference and training): the harness's own code, folded to the cell.

The script builds the module the harness builds (our `Experts` with the reference backend, or a user backend
imported by its dotted path, or transformers' experts class of the cell's family with
`config._experts_implementation` set to the backend's name) and runs the harness's own code on it, inlined
by harness/repro/source.py and folded to the cell by harness/repro/specialise.py (only its layout, device,
routing shape and oracle branch; `spec[...]` replaced by the cell's values):

- transformers cells run harness/measure/cell_run.py's `_run_kernel_cell` (or harness/measure/training.py's
  `run_training_cell`) whole: setup, the call loop, the steady-state and profiled calls, both dispatch
  proofs (uncompiled probe under the spy of harness/sources/dispatch.py, the profiled ops), MisDispatch;
- reference and user training cells run harness/measure/training.py's `_train_all` (the call loop, gradients
  against the float64 oracle);
- reference and user inference cells, the ones a torch bug report is made of, keep to the essentials:
  `main` runs harness/measure/cell_run.py's `_call_all` (the calls, the oracle, the tolerance) with a stand-in
  for `timed_call` that keeps the call's record but not its time, and no steady-state or profiled calls; a
  failing call raises with Python's own traceback. They collect no signals: compiled ones turn on torch's own
  recompile and graph-break logs instead, and their pass line says so.

Written for the script: `main`, which prints the versions (Python, OS, torch, transformers, GPU) and the
observed vs expected outcome, and stand-ins for the harness's machinery: `error_record` prints the
traceback, `portable_text` leaves paths as they are. Transformers scripts collect the signals as the harness
does (its SignalCollector: graph breaks, recompiles, CUDA-graph skips, the profiled call), so a degraded pass
(a recompile storm, CUDA graphs not used) reproduces: exit 1 with `degraded: ...` on the observed line.
"""

from __future__ import annotations

from typing import Any

from harness.config.vocabulary import CUDAGRAPH_MODES
from harness.repro.source import Script
from harness.repro.facts import Facts

REFERENCE = "backends.reference"
UNDER_TEST = (REFERENCE, "backends.grouped")  # folded to the cell, never trimmed further
_LAYOUT_FLAGS = ("is_transposed", "has_bias", "has_gate", "is_concatenated")

VERSIONS = '''
def versions():
    gpu = f"{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}" if torch.cuda.is_available() else "none"
    return f"Python {platform.python_version()}, {platform.platform()}, torch {torch.__version__}, GPU: {gpu}"
'''

TF_VERSIONS = '''
def versions():
    gpu = f"{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}" if torch.cuda.is_available() else "none"
    return (f"Python {platform.python_version()}, {platform.platform()}, torch {torch.__version__}, "
            f"transformers {transformers.__version__} ({os.path.dirname(transformers.__file__)}), GPU: {gpu}")
'''

# harness/measure/signals.py's error_record digs the root cause out of Dynamo's wrappers; a script shows the traceback.
ERROR_RECORD = '''
def error_record(exc, phase):  # stand-in for the harness's: print the traceback
    traceback.print_exception(exc)
    return {"type": f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins."),
            "message": (str(exc).strip().splitlines() or [""])[0], "phase": phase}
'''

# harness/portable.py rewrites paths so that committed results compare across machines; a script prints the paths
# of the machine it runs on.
PORTABLE_TEXT = '''
def portable_text(text):  # stand-in for the harness's: paths as this machine has them
    return text
'''

# The outcome the harness's cell function returns, printed: per call, then observed vs expected.
REPORT = '''
def report(spec, outcome):
    for call, record in enumerate(outcome["signals"]["calls"]):
        errors = {k.replace("_", " "): record[k] for k in ("rel_error", "grad_rel_error") if k in record}
        print(f"call {call} ({record['tokens']} tokens):", "raised" if record.get("error") else ", ".join(
            f"{k} {'n/a' if v is None else format(v, '.3g')}" for k, v in errors.items()))GRADIENTS
    error, degraded = outcome["error"], outcome["signals"].get("degraded") or []
    print(f"observed: {outcome['status']}" + (f" in {error['phase']}: {error['type']}: {error['message']}"
                                              if error else "") + "".join(f"; degraded: {d}" for d in degraded))
    print(EXPECTED_LINE)
    if outcome["status"] == "pass" and not degraded:
        print("did not reproduce: everything passed")
    return int(outcome["status"] != "pass" or bool(degraded))
'''
_GRADIENTS = '''
    for name, value in outcome["signals"].get("grad_errors", {}).items():
        print(f"gradient of {name}: max relative error {value:.3g}")'''
MAIN_GUARD = '''
if __name__ == "__main__":
    sys.exit(main())
'''

TRANSFORMERS_MAIN = '''
def main(spec):
    print(versions(), flush=True)  # before any traceback
    enable_logs()  # the recompile and CUDA-graph logs SignalCollector reads, on as in the harness's executors
    return report(spec, RUNNER(spec))
'''

# The module and subject as harness/sources/load.py's _reference_subject builds them (resolve_impl: the backend).
_OWN_SUBJECT = '''
    module = make_experts(spec["shape"]["experts"], spec["shape"]["hidden"], spec["shape"]["intermediate"],
                          layout=spec["cell"]["layout"], dtype=dtype, device=device, seed=spec["seed"])
    subject = types.SimpleNamespace(module=module, fn=BACKEND, dense_routing=DENSE)  # as harness/sources/load.py'''

OWN_TRAINING_MAIN = '''
def main(spec):
    print(versions(), flush=True)  # before any traceback
    device, dtype = torch.device(spec["cell"]["device"]), getattr(torch, spec["cell"]["dtype"])
    torch.manual_seed(spec["seed"])''' + _OWN_SUBJECT + '''
    reference = copy.deepcopy(module).to(torch.float64)
    compiled = compile_forward(spec, subject)
    signals = {"calls": [], "max_rel_error": None, "grad_errors": {}}
    with torch.enable_grad():
        status, error = call_outcome(lambda: _train_all(spec, subject, reference, compiled, device, dtype, signals),
                                     signals["calls"], spec["cell"]["mode"] != "uncompiled")
    return report(spec, {"status": status, "error": error, "signals": signals})
'''

# Inference of our own backends, the scripts a torch bug report is made of: _call_all itself (the harness's
# loop: calls, oracle, tolerance) and nothing around it; the traceback of a failing call is Python's own.
OWN_INFERENCE_MAIN = '''
def main(spec):
    print(f"Python {platform.python_version()}, {platform.platform()}, torch {torch.__version__}, GPU: "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}\\nEXPECTED_TEXT", flush=True)
    device, dtype = torch.device(spec["cell"]["device"]), getattr(torch, spec["cell"]["dtype"])
    torch.manual_seed(spec["seed"])''' + _OWN_SUBJECT + '''
    compiled, calls = compile_forward(spec, subject), []TORCH_LOGS_LINE
    try:
        with torch.no_grad():  # as generate() runs
            _call_all(spec, subject, compiled, device, dtype, calls)
    finally:
        for call, record in enumerate(calls):  # the records _call_all kept
            print(f"call {call} ({record['tokens']} tokens):", "failed" if record.get("rel_error") is None else
                  f"max relative error {record['rel_error']:.3g}")
    print("observed: pass (did not reproduce: every call passedPASS_NOTE)")
if __name__ == "__main__":
    try:
        main()
    except Exception as exc:
        what = f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins.").removeprefix("__main__.")
        print(f"observed: {what}: {str(exc).strip().splitlines()[0]}", flush=True)
        raise
'''

_LOGS = '''
    torch._logging.set_logs(recompiles=True, graph_breaks=True)  # torch prints each one, with its reason'''
_PASS_NOTE = "; recompiles and graph breaks, if any, are logged above"

# harness/measure/steps.py's timed_call without the timing: the call's record, which the script prints.
TIMED_CALL = '''
@contextlib.contextmanager
def timed_call(calls, tokens, device):  # stand-in for the harness's: the record, no timing
    calls.append({"tokens": tokens})
    yield calls[-1]
'''


def kernel_script(spec: dict[str, Any]) -> Script:
    """The script's code: the harness's functions the cell runs, main and stand-ins."""
    cell = spec["cell"]
    training, transformers = cell["phase"] == "training", cell["source"] == "transformers"
    script = Script(facts(spec), verbatim=UNDER_TEST, drop_members={"Experts": ("forward", "extra_repr")},
                    select={"FAMILIES": (cell["layout"],)}, drop_calls={"check_imported_source"})
    if transformers:
        for name in ("os", "platform", "sys", "torch", "traceback", "transformers"):
            script.add_import(name)
        script.glue(TF_VERSIONS + ERROR_RECORD + PORTABLE_TEXT, "harness.repro.kernel")
        runner, home = ("run_training_cell", "harness.measure.training") if training else \
            ("_run_kernel_cell", "harness.measure.cell_run")
        script.glue(report_text(spec) + TRANSFORMERS_MAIN.replace("RUNNER", runner) + MAIN_GUARD, home,
                    "harness.measure.signals")
        return script
    function = _own_backend(script, spec)
    replace = {"BACKEND": function, "DENSE": repr(_dense_routing(spec))}
    if training:
        for name in ("copy", "platform", "sys", "torch", "traceback", "types"):
            script.add_import(name)
        script.glue(VERSIONS + ERROR_RECORD, "harness.repro.kernel")
        main = report_text(spec, signals=False) + _fill(OWN_TRAINING_MAIN, replace) + MAIN_GUARD
        script.glue(main, "harness.measure.training", "backends.experts")
    else:
        for name in ("contextlib", "platform", "torch", "types"):
            script.add_import(name)
        script.glue(TIMED_CALL, "harness.repro.kernel")
        expected = f"expected: pass ({expected_text(spec)})".replace("{", "{{").replace("}", "}}").replace('"', "'")
        # Signals are not collected here (the script stays short); torch logs its recompiles and graph breaks.
        compiled = cell["mode"] != "uncompiled"
        main = _fill(OWN_INFERENCE_MAIN, {**replace, "EXPECTED_TEXT": expected,
                                          "TORCH_LOGS_LINE": _LOGS if compiled else "",
                                          "PASS_NOTE": _PASS_NOTE if compiled else ""})
        script.glue(main, "harness.measure.cell_run", "backends.experts", "backends.oracle")
    return script


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def report_text(spec: dict[str, Any], signals: bool = True) -> str:
    """`report()` for this cell: its expected outcome in words (with what a clean pass is, when the script collects
    the signals that say so), gradients for training cells."""
    expected = expected_text(spec) + (clean_pass_text(spec) if signals else "")
    return _fill(REPORT, {"EXPECTED_LINE": repr(f"expected: pass ({expected})"),
                          "GRADIENTS": _GRADIENTS if spec["cell"]["phase"] == "training" else ""})


def clean_pass_text(spec: dict[str, Any]) -> str:
    """What harness/measure/steps.py's `degradations` asks of a compiled pass, in words ("" uncompiled)."""
    cell = spec["cell"]
    if cell["mode"] == "uncompiled":
        return ""
    graphs = ", every compiled graph run as a CUDA graph" if cell["mode"] in CUDAGRAPH_MODES and \
        cell["device"] == "cuda" else ""
    return f"; a clean pass: at most {spec['max_recompiles']} recompiles{graphs}"


def expected_text(spec: dict[str, Any]) -> str:
    """What passing means for this cell, in words."""
    tolerance = spec["tolerance"]
    if spec["cell"]["scope"] == "model":
        return (f"every model check holds; compiled logits within {tolerance:g} (max relative error) of the eager "
                f"uncompiled model")
    what = "output and every gradient" if spec["cell"]["phase"] == "training" else "output"
    return f"each call's {what} within {tolerance:g} (max relative error) of the float64 oracle"


def facts(spec: dict[str, Any]) -> Facts:
    """What the cell fixes: its spec and cell, device, routing shape, and (our Experts) the layout's flags."""
    cell = spec["cell"]
    dense = _dense_routing(spec)
    found = Facts(params={"spec": spec, "cell": cell},
                  func_params={"oracle_forward": {"differentiable": cell["phase"] == "training"}},
                  attrs={"device": {"type": cell["device"]}},
                  class_attrs={"SignalCollector": {"self": {"cell": cell}}})
    # The oracle's branches for the inputs harness/measure/cell_run.py's fresh_inputs makes: routing weights [T, K] (or
    # [T, E] for a dense-routing layout), expert ids from a top-k over the experts (never out of range).
    found.exprs["oracle_forward"] = {"not 0 <= e < num_experts": False}
    if spec["shape"]["top_k"] != spec["shape"]["experts"]:
        found.exprs["oracle_forward"].update({"tuple(top_k_weights.shape) == (num_tokens, num_top_k)": not dense,
                                              "tuple(top_k_weights.shape) == (num_tokens, num_experts)": dense})
    if cell["source"] == "transformers":
        # transformers' experts classes are never backends/experts.py's; their flags are read as they run.
        found.exprs["_gate_split"] = {"gate_fn is Experts._apply_gate": False}
        return found
    flags = _layout_flags(cell["layout"])
    found.func_params["make_experts"] = {"layout": cell["layout"]}
    found.func_params["Experts.__init__"] = {name: flags[name] for name in _LAYOUT_FLAGS}
    found.attrs["module"] = flags
    found.attrs["subject"] = {"dense_routing": dense, "expected_ops": (), "forbidden_ops": ()}
    found.class_attrs["Experts"] = {"self": flags}
    found.exprs["oracle_forward"]["_gate_split(module)"] = flags["split"]
    return found


def _dense_routing(spec: dict[str, Any]) -> bool:
    """Whether the cell's routing weights are [T, E] router scores (harness/sources/load.py, harness/sources/families.py)."""
    layout = spec["cell"]["layout"]
    if spec["cell"]["source"] == "transformers":
        from harness.sources.families import FAMILIES

        return FAMILIES[layout].dense_routing if layout in FAMILIES else False
    from backends.layouts import DENSE_ROUTING_LAYOUTS

    return layout in DENSE_ROUTING_LAYOUTS


def _layout_flags(layout: str) -> dict[str, Any]:
    """The flags our Experts module has in `layout` (and how the oracle splits its gate), read off a real one."""
    from backends import oracle
    from backends.experts import make_experts

    module = make_experts(2, 4, 2, layout=layout)
    flags = {name: getattr(module, name) for name in _LAYOUT_FLAGS + ("has_post_expert_norm",)}
    flags["split"] = oracle._gate_split(module) if module.has_gate else None
    return flags


def _own_backend(script: Script, spec: dict[str, Any]) -> str:
    """The reference backend inlined, or a user backend imported (it is the user's code); its name."""
    module_name, _, function = spec["impl"].partition(":")
    if module_name == REFERENCE:
        script.need(REFERENCE, function)
    else:
        script.add_import(module_name, function)
    return function
