"""The environment under test: machine, torch and transformers versions, and what transformers registers."""
