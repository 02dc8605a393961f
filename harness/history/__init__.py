"""The release history: sweeps over transformers (and torch) releases, change points, bisect."""
