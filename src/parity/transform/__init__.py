"""Request-time transforms: running on-demand feature views' functions on both paths."""
