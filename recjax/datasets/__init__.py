"""Datasets that ship inside recjax (see ATTRIBUTION.md)."""
