"""The reviewer's HTML page: counts, what failed the gate by root cause, and the grid of every cell."""
