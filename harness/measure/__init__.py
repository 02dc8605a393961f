"""Measuring one cell inside the executor: build, compile, call, compare, and what the compiler reveals."""
