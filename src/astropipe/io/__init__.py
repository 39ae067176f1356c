"""File I/O at the edges: atomic writes, deterministic Parquet, JSON reports."""
