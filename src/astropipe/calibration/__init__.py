"""CCD calibration: master bias/dark/flat, calibrated science frames, cosmic rays.

Modules, in the order the stage uses them:

- :mod:`~astropipe.calibration.frames`: discover and classify frames from IMAGETYP/OBSTYPE;
- :mod:`~astropipe.calibration.plan`: group frames into masters and validate the set;
- :mod:`~astropipe.calibration.sections`: FITS sections (BIASSEC/TRIMSEC) and overscan;
- :mod:`~astropipe.calibration.calibrate`: the verbs (overscan, trim, gain, bias, dark, flat);
- :mod:`~astropipe.calibration.combine`: tiled median / σ-clipped combination with dask;
- :mod:`~astropipe.calibration.masters`: building masters from frames;
- :mod:`~astropipe.calibration.cosmics`: astroscrappy wrapper;
- :mod:`~astropipe.calibration.science`: calibrated frames and FITS writing;
- :mod:`~astropipe.calibration.simulate`: the deterministic simulated night;
- :mod:`~astropipe.calibration.stage`: ``run(params)`` for the ``calibrate_images`` stage.

See docs/calibration.md.
"""
