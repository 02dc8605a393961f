"""A standalone MoE experts module with transformers' weight layout and attribute names.

Default layout (transformers' `@use_experts_implementation` experts, e.g. Mixtral, DeepSeek-V2, Qwen MoE):

    gate_up_proj [E, 2I, H]   rows 0..I-1 are the gate projection, rows I..2I-1 the up projection
    down_proj    [E, H, I]

Variants, all named and read exactly as transformers' backend functions read them:

    is_transposed=True       gate_up_proj [E, H, 2I], down_proj [E, I, H]      (GPT-OSS, Aria)
    has_bias=True            gate_up_proj_bias [E, 2I], down_proj_bias [E, H]   (GPT-OSS)
    has_gate=False           up_proj [E, I, H] (+ up_proj_bias [E, I]), act_fn(up) only  (NemotronH)
    is_concatenated=False    gate/up interleaved along the 2I axis: gate = [0::2], up = [1::2] (GPT-OSS)

transformers' functions call `module._apply_gate` for gated experts and `module.act_fn` otherwise;
this class provides both, with SiLU as the activation.
"""

import torch
from torch import nn

from .layouts import DENSE_ROUTING_LAYOUTS, LAYOUT_FLAGS, LAYOUTS  # noqa: F401 - re-exported
from .reference import REFERENCE_BACKENDS



class Experts(nn.Module):
    """Collection of expert weights stored as 3D tensors, in one of transformers' layouts."""

    def __init__(
        self,
        num_experts: int,
        hidden_dim: int,
        intermediate_dim: int,
        *,
        is_transposed: bool = False,
        has_bias: bool = False,
        has_gate: bool = True,
        is_concatenated: bool = True,
        act_fn: nn.Module | None = None,
        experts_implementation="eager",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ):
        super().__init__()
        self.num_experts = num_experts
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        # The flags transformers' `use_experts_implementation` decorator sets, under the same names.
        self.is_transposed = is_transposed
        self.has_bias = has_bias
        self.has_gate = has_gate
        self.is_concatenated = is_concatenated
        self.has_post_expert_norm = False
        self._is_expert_parallel = False
        self.act_fn = act_fn if act_fn is not None else nn.SiLU()
        # A name from REFERENCE_BACKENDS or a callable with the ExpertsInterface signature.
        self.experts_implementation = experts_implementation

        factory = {"dtype": dtype, "device": device}
        up_dim = 2 * intermediate_dim if has_gate else intermediate_dim
        up_name = "gate_up_proj" if has_gate else "up_proj"
        up_shape = (num_experts, hidden_dim, up_dim) if is_transposed else (num_experts, up_dim, hidden_dim)
        down_shape = (
            (num_experts, intermediate_dim, hidden_dim) if is_transposed else (num_experts, hidden_dim, intermediate_dim)
        )
        self.register_parameter(up_name, nn.Parameter(torch.empty(up_shape, **factory)))
        self.down_proj = nn.Parameter(torch.empty(down_shape, **factory))
        if has_bias:
            self.register_parameter(f"{up_name}_bias", nn.Parameter(torch.empty(num_experts, up_dim, **factory)))
            self.down_proj_bias = nn.Parameter(torch.empty(num_experts, hidden_dim, **factory))

    def _apply_gate(self, gate_up_out: torch.Tensor) -> torch.Tensor:
        """Split [..., 2I] into gate and up (concatenated or interleaved) and return act_fn(gate) * up."""
        if self.is_concatenated:
            gate, up = gate_up_out.chunk(2, dim=-1)
        else:
            gate, up = gate_up_out[..., 0::2], gate_up_out[..., 1::2]
        return self.act_fn(gate) * up

    def forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor):
        """Run the backend named by `experts_implementation` on [T,H] tokens; returns [T,H]."""
        implementation = self.experts_implementation
        if not callable(implementation):
            implementation = REFERENCE_BACKENDS[implementation]
        return implementation(self, hidden_states, top_k_index, top_k_weights)

    def extra_repr(self) -> str:
        """Show sizes and layout flags in print(module)."""
        return (
            f"num_experts={self.num_experts}, hidden_dim={self.hidden_dim}, intermediate_dim={self.intermediate_dim}, "
            f"is_transposed={self.is_transposed}, has_bias={self.has_bias}, has_gate={self.has_gate}, "
            f"is_concatenated={self.is_concatenated}"
        )


def make_experts(
    num_experts: int,
    hidden: int,
    intermediate: int,
    *,
    layout: str = "default",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    seed: int = 0,
    experts_implementation="eager",
) -> Experts:
    """Build an `Experts` in the named layout (see LAYOUTS) with seeded random weights giving O(1) outputs."""
    if layout not in LAYOUT_FLAGS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    module = Experts(
        num_experts,
        hidden,
        intermediate,
        **LAYOUT_FLAGS[layout],
        experts_implementation=experts_implementation,
        dtype=dtype,
        device=device,
    )
    _init_weights(module, seed)
    return module


def _init_weights(module: Experts, seed: int) -> None:
    """Fill the parameters from a seeded CPU generator, layout-independently."""
    # The logical weights (gate, up: [E, I, H]; down: [E, H, I]) are drawn first and only then packed
    # into the module's layout, so the same seed gives the same function in every gated layout
    # (default, transposed, interleaved agree up to rounding), which the tests exploit.
    # Scales: x ~ N(0, 1) of size H, so N(0, 1/H) projections give O(1) pre-activations and
    # N(0, 1/I) down-projections give O(1) outputs; biases are O(0.1-0.5) so they visibly matter.
    E, H, I = module.num_experts, module.hidden_dim, module.intermediate_dim
    gen = torch.Generator().manual_seed(seed)
    gate = torch.randn(E, I, H, generator=gen) / H**0.5
    up = torch.randn(E, I, H, generator=gen) / H**0.5
    down = torch.randn(E, H, I, generator=gen) / I**0.5
    gate_bias = 0.5 * torch.randn(E, I, generator=gen)
    up_bias = 0.5 * torch.randn(E, I, generator=gen)
    down_bias = 0.1 * torch.randn(E, H, generator=gen)

    if module.has_gate:
        if module.is_concatenated:
            up_weight = torch.cat([gate, up], dim=1)  # [E, 2I, H]
            up_bias_packed = torch.cat([gate_bias, up_bias], dim=1)
        else:
            up_weight = torch.stack([gate, up], dim=2).reshape(E, 2 * I, H)  # rows g0, u0, g1, u1, ...
            up_bias_packed = torch.stack([gate_bias, up_bias], dim=2).reshape(E, 2 * I)
        up_name = "gate_up_proj"
    else:
        up_weight, up_bias_packed, up_name = up, up_bias, "up_proj"

    if module.is_transposed:
        up_weight, down = up_weight.transpose(1, 2), down.transpose(1, 2)
    with torch.no_grad():
        getattr(module, up_name).copy_(up_weight)
        module.down_proj.copy_(down)
        if module.has_bias:
            getattr(module, f"{up_name}_bias").copy_(up_bias_packed)
            module.down_proj_bias.copy_(down_bias)
