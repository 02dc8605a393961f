"""Results: statuses and verdicts, results.json, observations read back, merges and baselines."""
