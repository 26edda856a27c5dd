"""Durable state beside the index: the catalog's metadata (catalog.py)."""
