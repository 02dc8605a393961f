"""transformers model families per `layout` value: tiny random configs, their experts class and causal LM.

Every family is built from a config (no hub download). The same config serves kernel cells (only the
experts class is built) and model cells (the whole causal LM). Layouts without a transformers family
(transposed, bias, interleaved, ...) are not here: matrix.yaml keeps them off transformers backends.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

VOCAB = 128
LAYERS = 2


@dataclass(frozen=True)
class Family:
    """One weight layout as transformers ships it: where its classes live and how to make a tiny config."""

    layout: str
    model_type: str  # transformers/models/<model_type>
    experts_class: str
    causal_lm_class: str
    config_class: str
    config_kwargs: Callable[[int, int, int, int], dict[str, Any]]  # (hidden, intermediate, experts, top_k)
    dense_routing: bool = False  # kernel cells feed [T, E] router scores instead of [T, K]

    def config(self, hidden: int, intermediate: int, experts: int, top_k: int):
        """A tiny random config of this family."""
        module = importlib.import_module("transformers")
        return getattr(module, self.config_class)(**self.config_kwargs(hidden, intermediate, experts, top_k))

    def cls(self, name: str):
        """A class of this family's modeling module (e.g. its experts class)."""
        module = importlib.import_module(f"transformers.models.{self.model_type}.modeling_{self.model_type}")
        return getattr(module, name)


def _heads(hidden: int) -> dict[str, int]:
    # 4 query heads, 2 kv heads; head_dim from hidden so any shape of matrix.yaml works.
    return {"num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": max(8, hidden // 4)}


def _qwen2_moe(hidden, intermediate, experts, top_k):
    return {"vocab_size": VOCAB, "hidden_size": hidden, "intermediate_size": 2 * intermediate,
            "moe_intermediate_size": intermediate, "shared_expert_intermediate_size": intermediate,
            "num_experts": experts, "num_experts_per_tok": top_k, "num_hidden_layers": LAYERS,
            "max_position_embeddings": 256, "hidden_act": "silu", **_heads(hidden)}


def _gpt_oss(hidden, intermediate, experts, top_k):
    return {"vocab_size": VOCAB, "hidden_size": hidden, "intermediate_size": intermediate,
            "num_local_experts": experts, "num_experts_per_tok": top_k, "num_hidden_layers": LAYERS,
            "layer_types": ["sliding_attention", "full_attention"][:LAYERS], "sliding_window": 16,
            # Plain RoPE: the YaRN default is sized for 128k contexts and warns at this size.
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
            "max_position_embeddings": 256, **_heads(hidden)}


def _nemotron_h(hidden, intermediate, experts, top_k):
    # Attention + MoE blocks only: the Mamba blocks are not what is under test and need kernels on GPU.
    return {"vocab_size": VOCAB, "hidden_size": hidden, "intermediate_size": 2 * intermediate,
            "moe_intermediate_size": intermediate, "moe_shared_expert_intermediate_size": intermediate,
            "n_routed_experts": experts, "num_experts_per_tok": top_k, "layers_block_type": ["attention", "moe"],
            "n_group": 1, "topk_group": 1, "max_position_embeddings": 256, "use_mamba_kernels": False,
            **_heads(hidden)}


def _deepseek_v2(hidden, intermediate, experts, top_k):
    # MLA attention at tiny ranks; every layer sparse (first_k_dense_replace=0).
    return {"vocab_size": VOCAB, "hidden_size": hidden, "intermediate_size": 2 * intermediate,
            "moe_intermediate_size": intermediate, "n_routed_experts": experts, "num_experts_per_tok": top_k,
            "n_shared_experts": 1, "num_hidden_layers": LAYERS, "num_attention_heads": 4, "num_key_value_heads": 4,
            "kv_lora_rank": 16, "q_lora_rank": None, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8,
            "v_head_dim": 8, "first_k_dense_replace": 0, "max_position_embeddings": 256}


FAMILIES = {
    "default": Family("default", "qwen2_moe", "Qwen2MoeExperts", "Qwen2MoeForCausalLM", "Qwen2MoeConfig", _qwen2_moe),
    "gpt_oss": Family("gpt_oss", "gpt_oss", "GptOssExperts", "GptOssForCausalLM", "GptOssConfig", _gpt_oss),
    "non_gated": Family("non_gated", "nemotron_h", "NemotronHExperts", "NemotronHForCausalLM", "NemotronHConfig",
                        _nemotron_h),
    # DeepSeek-V2 experts fed [T, E] router scores (older DeepSeek-style callers); the model gathers [T, K].
    "deepseek_v2": Family("deepseek_v2", "deepseek_v2", "DeepseekV2Experts", "DeepseekV2ForCausalLM",
                          "DeepseekV2Config", _deepseek_v2, dense_routing=True),
}


def family(layout: str) -> Family:
    """The transformers family of a layout; ValueError naming the layouts that have one."""
    try:
        return FAMILIES[layout]
    except KeyError:
        raise ValueError(f"layout {layout!r} has no transformers family; transformers backends run on "
                         f"{', '.join(FAMILIES)} (give the slices that run them `source: transformers, layout: [...]`)") from None
