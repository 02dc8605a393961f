"""Compile-compatibility harness for Mixture-of-Experts experts backends."""

__version__ = "0.1.0"
