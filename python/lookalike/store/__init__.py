"""Durable state beside the index: the write-ahead log of writes (wal.py) and the
bytes of its records (records.py), snapshot directories (snapshots.py), and the
catalog's metadata (catalog.py)."""
