"""Whether the profiler can see a custom op that a torch.compile'd graph calls, on this torch.

torch 2.14 calls custom ops from compiled graphs without a profiler event of their own (2.13 emits one).
transformers' grouped_mm fallback is such an op, so on 2.14 a compiled float16/float32 grouped_mm cell shows
only the `aten::mm` calls inside it: the profiled call cannot confirm the dispatch, and must not be read as
"another backend ran". Asked once per executor, only when expected ops are missing (a small CPU compile).
"""

import functools

_OP = "harness_probe::visible_identity"


@functools.lru_cache(maxsize=None)
def custom_ops_visible_when_compiled() -> bool:
    """True when a custom op called from a compiled graph shows up in the profiler's events."""
    import torch

    # A schema string, not annotations: torch.library reads annotations at registration time.
    @torch.library.custom_op(_OP, mutates_args=(), schema="(Tensor x) -> Tensor")
    def _identity(x):
        return x.clone()

    @_identity.register_fake
    def _(x):
        return torch.empty_like(x)

    compiled = torch.compile(lambda x: _identity(x) + 1, fullgraph=True)
    x = torch.ones(8)
    compiled(x)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        compiled(x)
    return any(_OP in event.name for event in prof.events())
