"""Model server: Open Inference Protocol, entity-based predict, adaptive batching,
prediction log."""
