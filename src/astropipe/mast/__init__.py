"""MAST CAOM metadata: the ``invoke`` envelope parser, the ``mast`` config, the ingest_mast stage.

The network client is :mod:`astropipe.sources.mast`; see docs/ingest_mast.md.
"""
