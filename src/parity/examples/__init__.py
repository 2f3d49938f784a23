"""Worked examples that exercise Parity end to end on generated data."""
