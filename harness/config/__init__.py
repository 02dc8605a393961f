"""Configuration: matrix.yaml read, validated and typed (the axes, backends, shapes, slices and rules)."""
