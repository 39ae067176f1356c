"""fits_to_zarr reads: a file decoded from its scanned header equals a full re-parse."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from astropipe.zarrcube.discover import group_lwa
from astropipe.zarrcube.fitsfile import known_layout, read_known, read_primary, read_primary_header
from astropipe.zarrcube.lwa import LwaLayout
from zarr_helpers import make_lwa


@pytest.mark.parametrize("dtype", ["float32", "int16"])
def test_read_known_equals_read_primary(tmp_path: Path, dtype: str) -> None:
    files = make_lwa(tmp_path / "in", dtype=dtype, n_times=1)
    path = files[0]
    known = known_layout(path, read_primary_header(path))
    data, digest = read_known(path, bytearray(), known)
    _, ref, ref_digest = read_primary(path)
    assert digest == ref_digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert data.dtype == ref.dtype
    np.testing.assert_array_equal(data, ref)
    with fits.open(path) as hdul:  # astropy applies BSCALE/BZERO itself (in float32)
        np.testing.assert_allclose(data, hdul[0].data, rtol=1e-6, atol=1e-5)


def test_read_known_refuses_a_changed_header(tmp_path: Path) -> None:
    path = make_lwa(tmp_path / "in", n_times=1)[0]
    known = known_layout(path, read_primary_header(path))
    with fits.open(path, mode="update") as hdul:  # same size, other header bytes
        hdul[0].header["BSCALE"] = 2.0
    assert read_known(path, bytearray(), known) is None
    path.write_bytes(path.read_bytes() + bytes(2880))  # other size
    assert read_known(path, bytearray(), known) is None


def test_layout_read_sees_a_file_changed_after_the_scan(tmp_path: Path) -> None:
    files = make_lwa(tmp_path / "in", n_times=1)
    layout = LwaLayout(read_workers=2)
    try:
        info = layout.scan(group_lwa(files)[0])
        path = files[0]
        with fits.open(path, mode="update") as hdul:  # pixels x 2 through BSCALE
            hdul[0].header["BSCALE"] = 2.0
            freq = float(hdul[0].header["CRVAL3"])
        arrays, sums = layout.read(info)
    finally:
        layout.close()
    f = info.static["frequency_hz"].index(freq)
    with fits.open(path) as hdul:
        expected = np.asarray(hdul[0].data, dtype=np.float32).squeeze().T
    np.testing.assert_allclose(arrays["SKY"][f, 0], expected, rtol=1e-6)
    rel = next(k for k in sums if k.endswith(path.name))
    assert sums[rel] == hashlib.sha256(path.read_bytes()).hexdigest()
