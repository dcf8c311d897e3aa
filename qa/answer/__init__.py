"""Retrieval and fusion, the span reader and its calibration."""
