"""Sources of the code under test: our reference backends and transformers' own experts, per release."""
