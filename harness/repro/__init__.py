"""Repro scripts: one cell as a standalone script built from the harness's own code."""
