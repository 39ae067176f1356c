"""Benchmarks: astropipe against the reference tools, on the same input, in the same process."""
