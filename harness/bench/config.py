"""What `python -m harness bench` measures: shapes, token counts, compile settings, dtypes, backends and limits."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from harness.bench.results import TAG
from harness.config.vocabulary import CUDAGRAPH_MODES, DEVICES, DTYPES, MODES
from harness.environment.registered import DOCUMENTED
from harness.errors import HarnessError

# The matrix's vocabulary (harness/config/vocabulary.py): the same devices, compile modes and dtypes, in the same
# order; "uncompiled" is plain eager PyTorch, CUDAGRAPH_MODES capture CUDA graphs (cuda only).
# Named as cell ids begin, `source-backend` (transformers-grouped_mm); a point's record has `source` and `backend`
# as a cell's does. transformers-* are transformers' own functions run on backends.experts.Experts (same attribute
# names); transformers-eager is the eager forward of transformers' Qwen2-MoE experts class, run on that module.
BENCH_SOURCES = ("transformers", "reference")
# Run order within a tier: eager, batched_mm, grouped_mm, as bench runs have always gone (the docs' table lists the
# documented backends the other way round).
BACKENDS = tuple(f"{source}-{backend}" for source in BENCH_SOURCES for backend in reversed(DOCUMENTED))


@dataclass(frozen=True)
class BenchShape:
    """Experts dimensions (gated SiLU MLP per expert, transformers' default layout) and where they come from."""

    name: str
    hidden: int
    intermediate: int
    experts: int
    top_k: int
    note: str = ""

    def expert_params(self) -> int:
        """Parameters of one expert: gate and up [I, H] plus down [H, I]."""
        return 3 * self.hidden * self.intermediate

    def flops(self, tokens: int) -> int:
        """Multiply-adds x 2 of the expert projections for `tokens` tokens (top_k experts each)."""
        return 2 * tokens * self.top_k * self.expert_params()

    def batched_gather_bytes(self, tokens: int, element_size: int) -> int:
        """Bytes of the per-(token, expert) weight copies batched_mm gathers (gate_up and down, both alive)."""
        return tokens * self.top_k * self.expert_params() * element_size


# Real model dimensions (config.json of each model): the GPU run uses them as they are.
GPU_SHAPES = {
    "qwen1.5-moe": BenchShape("qwen1.5-moe", 2048, 1408, 60, 4,
                              "Qwen1.5-MoE-A2.7B experts: hidden 2048, moe_intermediate 1408, 60 experts, top-4"),
    "mixtral-8x7b": BenchShape("mixtral-8x7b", 4096, 14336, 8, 2,
                               "Mixtral-8x7B experts: hidden 4096, intermediate 14336, 8 experts, top-2"),
}
# Scaled down to finish on 2 shared CPU cores in a few minutes; expert count and top-k kept. float32 first on
# CPU: on this machine's AVX2 cores a bf16 torch.mm runs ~20x slower than an fp32 one (no native bf16 units).
CPU_SHAPES = {
    "qwen1.5-moe-cpu": BenchShape("qwen1.5-moe-cpu", 256, 176, 60, 4,
                                  "Qwen1.5-MoE-A2.7B with hidden and intermediate / 8: 256, 176; 60 experts, top-4"),
    "mixtral-cpu": BenchShape("mixtral-cpu", 256, 896, 8, 2,
                              "Mixtral-8x7B with hidden and intermediate / 16: 256, 896; 8 experts, top-2"),
}
PRESET_SHAPES = {**GPU_SHAPES, **CPU_SHAPES}

DEFAULTS = {
    # The autotuning settings take minutes of compiling per item: a second run measures them (--tag autotune).
    "cuda": {"shapes": tuple(GPU_SHAPES), "tokens": (1, 4, 16, 64, 256, 1024, 4096, 16384),
             "dtypes": ("bfloat16",), "modes": ("uncompiled", "default", "reduce-overhead"), "budget_s": 420.0,
             "target_s": 0.15, "min_reps": 10, "max_reps": 100, "max_call_s": 0.5, "threads": None},
    "cpu": {"shapes": tuple(CPU_SHAPES), "tokens": (1, 4, 16, 64, 256, 1024),
            "dtypes": ("float32", "bfloat16"), "modes": ("uncompiled", "default"), "budget_s": 420.0,
            "target_s": 0.3, "min_reps": 5, "max_reps": 20, "max_call_s": 1.0, "threads": 1},
}

# Run order: the settings the documentation's claims are about come first, so a run cut short by its time
# budget still answers them; the autotuning settings (minutes of compiling each on an H100) come last, each
# backend's max-autotune right after its max-autotune-no-cudagraphs (it reuses the autotuning results). Lower runs
# earlier; the second dtype comes later (uncompiled ones less so).
_TIER = {
    "transformers": {"uncompiled": 0, "default": 1, "reduce-overhead": 2, "max-autotune-no-cudagraphs": 6,
                     "max-autotune": 6},
    "reference": {"uncompiled": 3, "default": 4, "reduce-overhead": 5, "max-autotune-no-cudagraphs": 8,
                  "max-autotune": 8},
}
AUTOTUNE_MODES = ("max-autotune-no-cudagraphs", "max-autotune")


@dataclass(frozen=True)
class Item:
    """One compiled (or not) function measured over every token count: shape x dtype x backend x mode."""

    shape: str
    dtype: str
    source: str  # transformers or reference
    backend: str  # eager, batched_mm or grouped_mm
    mode: str

    @property
    def source_backend(self) -> str:
        """As cell ids begin and `--backends` names it, e.g. `transformers-grouped_mm`."""
        return f"{self.source}-{self.backend}"

    def label(self) -> str:
        """Readable id, e.g. `qwen1.5-moe bfloat16 transformers-grouped_mm default`."""
        return f"{self.shape} {self.dtype} {self.source_backend} {self.mode}"


@dataclass
class BenchConfig:
    """Everything one benchmark run needs; `to_json()` goes into the results file."""

    device: str
    shapes: tuple[BenchShape, ...]
    tokens: tuple[int, ...]
    dtypes: tuple[str, ...]
    modes: tuple[str, ...]
    backends: tuple[str, ...]
    budget_s: float
    target_s: float
    min_reps: int
    max_reps: int
    max_call_s: float
    memory_limit_bytes: int | None = None  # None: decided at run time from free memory
    # CPU: 1 thread by default. On a shared 2-core machine, 2 OpenMP threads stall at every parallel region
    # whenever the other core is busy (measured here: grouped_mm 10-30x slower than with 1 thread under load).
    threads: int | None = None
    tag: str | None = None  # results go to bench-<device>-<tag>.json
    seed: int = 0
    input_sets: int = 4
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """Plain-JSON view of the configuration."""
        doc = asdict(self)
        doc["shapes"] = [asdict(shape) for shape in self.shapes]
        return doc


def make_config(device: str, *, shapes=None, tokens=None, dtypes=None, modes=None, backends=None,
                budget_s=None, max_reps=None, memory_limit_gb=None, threads=None, tag=None, seed=0) -> BenchConfig:
    """Validated configuration: defaults per device, overridden by the arguments given (None = default)."""
    if device not in DEVICES:
        raise HarnessError(f"unknown device {device!r}", key="--device", allowed=", ".join(DEVICES))
    base = DEFAULTS[device]
    modes = tuple(modes or base["modes"])
    for mode in modes:
        if mode not in MODES:
            raise HarnessError(f"unknown compile setting {mode!r}", key="--modes", allowed=", ".join(MODES))
        if mode in CUDAGRAPH_MODES and device != "cuda":
            raise HarnessError(f"{mode!r} captures CUDA graphs, which need --device cuda", key="--modes")
    for dtype in dtypes or ():
        if dtype not in DTYPES:
            raise HarnessError(f"unknown dtype {dtype!r}", key="--dtypes", allowed=", ".join(DTYPES))
    for backend in backends or ():
        if backend not in BACKENDS:
            raise HarnessError(f"unknown backend {backend!r}", key="--backends", allowed=", ".join(BACKENDS))
    tokens = tuple(sorted(set(tokens or base["tokens"])))
    if tokens[0] < 1:
        raise HarnessError(f"token counts must be >= 1, got {tokens[0]}", key="--tokens")
    if budget_s is not None and budget_s <= 0:
        raise HarnessError(f"must be > 0, got {budget_s}", key="--budget-s")
    if max_reps is not None and max_reps < 1:
        raise HarnessError(f"must be >= 1, got {max_reps}", key="--max-reps")
    if memory_limit_gb is not None and memory_limit_gb <= 0:
        raise HarnessError(f"must be > 0, got {memory_limit_gb}", key="--memory-limit-gb")
    if tag is not None and not TAG.fullmatch(tag):
        raise HarnessError(f"must be letters, digits or '_', got {tag!r}", key="--tag")
    if threads is not None and threads < 1:
        raise HarnessError(f"must be >= 1, got {threads}", key="--threads")
    max_reps = max_reps or base["max_reps"]
    return BenchConfig(
        device=device, shapes=tuple(parse_shape(spec) for spec in (shapes or base["shapes"])), tokens=tokens,
        dtypes=tuple(dtypes or base["dtypes"]), modes=modes, backends=tuple(backends or BACKENDS),
        budget_s=float(budget_s or base["budget_s"]), target_s=base["target_s"],
        min_reps=min(base["min_reps"], max_reps), max_reps=max_reps, max_call_s=base["max_call_s"],
        memory_limit_bytes=None if memory_limit_gb is None else int(memory_limit_gb * 2**30),
        threads=threads or base["threads"], tag=tag, seed=seed)


def parse_shape(spec: str) -> BenchShape:
    """A preset name (see PRESET_SHAPES) or `NAME=HIDDENxINTERMEDIATExEXPERTSxTOP_K`."""
    if "=" not in spec:
        if spec not in PRESET_SHAPES:
            raise HarnessError(f"unknown shape {spec!r}", key="--shapes",
                               allowed=", ".join(PRESET_SHAPES) + ", or NAME=HIDDENxINTERMEDIATExEXPERTSxTOP_K")
        return PRESET_SHAPES[spec]
    name, _, dims = spec.partition("=")
    try:
        hidden, intermediate, experts, top_k = (int(part) for part in dims.lower().split("x"))
    except ValueError:
        raise HarnessError(f"must look like NAME=HIDDENxINTERMEDIATExEXPERTSxTOP_K, got {spec!r}",
                           key="--shapes") from None
    if not name or min(hidden, intermediate, experts, top_k) < 1 or top_k > experts:
        raise HarnessError(f"needs a name, positive sizes and top_k <= experts, got {spec!r}", key="--shapes")
    return BenchShape(name, hidden, intermediate, experts, top_k, f"custom: {dims}")


def plan_items(config: BenchConfig) -> list[Item]:
    """Every item of the run, in the order they run (see _TIER)."""
    items = [Item(shape.name, dtype, *backend.split("-", 1), mode) for shape in config.shapes
             for dtype in config.dtypes for backend in config.backends for mode in config.modes]
    shape_order = {shape.name: i for i, shape in enumerate(config.shapes)}
    backend_order = {backend: i for i, backend in enumerate(config.backends)}

    def rank(item: Item):
        extra = config.dtypes.index(item.dtype) * (0.5 if item.mode == "uncompiled" else 4)
        return (_TIER[item.source][item.mode] + extra, shape_order[item.shape], backend_order[item.source_backend],
                item.mode in CUDAGRAPH_MODES, MODES.index(item.mode))  # CUDA-graph capture after its twin

    return sorted(items, key=rank)
