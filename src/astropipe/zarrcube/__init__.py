"""FITS image series → chunked Zarr cubes (the ``fits_to_zarr`` stage).

Modules: :mod:`~.discover` (file names, grouping by time step), :mod:`~.headers` (header
corrections), :mod:`~.grid` (shared pixel grid, sky coordinates), :mod:`~.layouts` (the ``lwa``
and ``ccd`` collections), :mod:`~.writer` (incremental, crash-safe writes), :mod:`~.simulate`
(a small simulated OVRO-LWA series), :mod:`~.stage` (the DVC stage).
"""
