"""Weight layouts of the experts module by name (pure Python: matrix validation reads it without torch)."""

# layout name -> constructor flags of backends.experts.Experts. Each names a combination a real model family ships.
LAYOUT_FLAGS = {
    "default": {},  # Mixtral, DeepSeek-V2/V3, Qwen2/3-MoE
    "transposed": {"is_transposed": True},  # Aria
    "bias": {"has_bias": True},  # not shipped as such; isolates the bias handling
    "transposed_bias": {"is_transposed": True, "has_bias": True},  # OpenAI privacy filter
    "interleaved": {"is_concatenated": False},  # isolates the interleaved gate/up handling
    "gpt_oss": {"is_transposed": True, "has_bias": True, "is_concatenated": False},  # GPT-OSS (with SiLU gate)
    "non_gated": {"has_gate": False},  # NemotronH
    "deepseek_v2": {},  # default weights; routing weights arrive as [T, E] (see DENSE_ROUTING_LAYOUTS)
}
LAYOUTS = tuple(LAYOUT_FLAGS)
# Layouts whose routing weights are the full [T, E] router scores rather than [T, K] (DeepSeek-V2 style).
DENSE_ROUTING_LAYOUTS = ("deepseek_v2",)
