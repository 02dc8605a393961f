"""Benchmarks of the experts backends: latency, memory and roofline, and the docs' performance claims."""
