"""`qa eval` and its metrics."""
