"""Cells: the matrix expanded into cells, their ids, expectations, specs and the selection of a run."""
