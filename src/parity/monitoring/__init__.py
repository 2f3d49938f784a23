"""Monitoring: signals about what the store and servers answer (it starts nothing)."""
