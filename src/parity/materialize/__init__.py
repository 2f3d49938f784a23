"""Batch materialization: the newest offline row per entity, written to the online store."""
