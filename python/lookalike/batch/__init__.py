"""Batch (re-)indexing: a catalog encoded and built into shard data directories,
in process or as a Ray Data pipeline (pipeline.py)."""

from lookalike.batch.pipeline import RUNNERS, BuildReport, build_shards

__all__ = ["RUNNERS", "BuildReport", "build_shards"]
