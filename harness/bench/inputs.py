"""Benchmark inputs: seeded tokens and uniform top-k routing, several sets per point so caches do not flatter."""

from __future__ import annotations

import torch

from harness.bench.config import BenchShape


def make_inputs(shape: BenchShape, tokens: int, dtype: torch.dtype, device: str, seed: int, count: int):
    """`count` (hidden_states [T,H], top_k_index [T,K], top_k_weights [T,K]) tuples, drawn on CPU, then moved."""
    sets = []
    for index in range(count):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + tokens * 101 + index)
        hidden = torch.randn(tokens, shape.hidden, generator=gen)
        # Uniform routing: K distinct experts per token, softmax-normalised weights (norm_topk_prob=True).
        index_ = torch.rand(tokens, shape.experts, generator=gen).topk(shape.top_k, dim=-1).indices
        weights = torch.randn(tokens, shape.top_k, generator=gen).softmax(dim=-1)
        sets.append((hidden.to(device=device, dtype=dtype), index_.to(device), weights.to(device=device, dtype=dtype)))
    return sets


def experts_hit(input_sets) -> float:
    """Mean number of distinct experts the routing of each input set selects (their weights must be read)."""
    counts = [int(torch.unique(top_k_index).numel()) for _, top_k_index, _ in input_sets]
    return sum(counts) / len(counts)
