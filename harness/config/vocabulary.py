"""The matrix's vocabulary, declared once: the axes, their allowed values, sources, expectations.

Cells, ids, selection, rules, reports and the benchmark all derive from these tuples; a new axis is one entry in
AXES (with its values, and OPTIONAL_AXES when a matrix may leave it out) plus its handling where it matters.
"""

SCHEMA_VERSION = 2
MODES = ("uncompiled", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")
DTYPES = ("bfloat16", "float16", "float32")
DEVICES = ("cpu", "cuda")
ROUTINGS = ("uniform", "skewed")
SOURCES = ("reference", "transformers", "user")
EXPECTS = ("pass", "fail", "observe")  # observe: no documented claim, report what happens
FAIL_STATUSES = ("compile_error", "runtime_error", "mismatch", "crash", "timeout")
SCOPES = ("kernel", "model")
PHASES = ("inference", "training")
AXES = ("mode", "dtype", "fullgraph", "device", "shape", "layout", "scope", "phase")
# Axes a matrix may leave out, with the value they then take.
OPTIONAL_AXES = {"layout": ("default",), "scope": ("kernel",), "phase": ("inference",)}
RULE_KEYS = ("source", "backend") + AXES
