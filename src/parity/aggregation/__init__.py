"""Windowed aggregations: the window rule, and the partial aggregates (tiles) merged online."""
