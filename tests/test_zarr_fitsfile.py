"""fits_to_zarr reads: a file decoded from its scanned header equals a full re-parse."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from astropipe.errors import InputFileError
from astropipe.io.fits import known_layout, read_known, read_primary, read_primary_header
from astropipe.zarrcube.discover import group_lwa
from astropipe.zarrcube.lwa import LwaLayout
from zarr_helpers import make_lwa


@pytest.mark.parametrize("dtype", ["float32", "int16"])
def test_read_known_equals_read_primary(tmp_path: Path, dtype: str) -> None:
    files = make_lwa(tmp_path / "in", dtype=dtype, n_times=1)
    path = files[0]
    known = known_layout(path, read_primary_header(path)[1])
    data, digest = read_known(path, bytearray(), known)
    _, ref, ref_digest = read_primary(path)
    assert digest == ref_digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert data.dtype == ref.dtype
    np.testing.assert_array_equal(data, ref)
    with fits.open(path) as hdul:  # astropy applies BSCALE/BZERO itself (in float32)
        np.testing.assert_allclose(data, hdul[0].data, rtol=1e-6, atol=1e-5)


def test_read_known_refuses_a_changed_header(tmp_path: Path) -> None:
    path = make_lwa(tmp_path / "in", n_times=1)[0]
    known = known_layout(path, read_primary_header(path)[1])
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


# --- the one reader both stages use (astropipe.io.fits) -------------------------------------


def _int_image(path: Path, *, blank: bool = True) -> np.ndarray:
    """A 6x5 int16 image with BSCALE/BZERO (and a BLANK pixel); returns the physical values."""
    raw = np.arange(30, dtype=np.int16).reshape(6, 5) - 7
    hdu = fits.PrimaryHDU(raw)
    hdu.header["BSCALE"], hdu.header["BZERO"] = 0.5, 32768.0
    hdu.header["IMAGETYP"] = "LIGHT"
    expected = raw.astype(np.float64) * 0.5 + 32768.0
    if blank:
        hdu.header["BLANK"] = -7
        expected[0, 0] = np.nan
    hdu.writeto(path)
    return expected


def test_both_stages_decode_bscale_bzero_blank_alike(tmp_path: Path) -> None:
    from astropipe.calibration.frames import read_info, read_region

    path = tmp_path / "int.fits"
    expected = _int_image(path)
    _, zarr_side, _ = read_primary(path)  # fits_to_zarr: float32
    cal_side = read_region(read_info(path), slice(0, 6))  # calibrate_images: float64
    assert cal_side.dtype == np.float64 and zarr_side.dtype == np.float32
    np.testing.assert_array_equal(cal_side, expected)
    np.testing.assert_array_equal(zarr_side, expected.astype(np.float32))
    np.testing.assert_array_equal(read_region(read_info(path), slice(2, 4), slice(1, 3)),
                                  expected[2:4, 1:3])  # fmt: skip
    with fits.open(path) as hdul:  # astropy's own scaling agrees
        np.testing.assert_array_equal(np.asarray(hdul[0].data, np.float64), expected)


def test_float_nan_and_inf_survive_both_readers(tmp_path: Path) -> None:
    from astropipe.calibration.frames import read_info, read_region

    data = np.array([[1.5, np.nan], [np.inf, -np.inf]], np.float32)
    hdu = fits.PrimaryHDU(data)
    hdu.header["IMAGETYP"] = "LIGHT"
    path = tmp_path / "f.fits"
    hdu.writeto(path)
    np.testing.assert_array_equal(read_primary(path)[1], data)
    np.testing.assert_array_equal(read_region(read_info(path), slice(0, 2)), data)


def test_truncation_is_the_same_error_in_both_stages(tmp_path: Path) -> None:
    from astropipe.calibration.frames import read_info

    path = tmp_path / "cut.fits"
    _int_image(path)
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[: size - 2880])
    want = rf"^{path}: FITS file is truncated \(HDU 0 needs 2940 bytes, the file has 2880\); re-"
    with pytest.raises(InputFileError, match=want):
        read_primary_header(path)
    with pytest.raises(InputFileError, match=want):
        read_info(path)


def test_padding_only_missing_is_not_truncation(tmp_path: Path) -> None:
    path = tmp_path / "short-pad.fits"
    expected = _int_image(path, blank=False)
    path.write_bytes(path.read_bytes()[: 2880 + 60])  # header + 30 int16, padding dropped
    np.testing.assert_array_equal(read_primary(path)[1], expected.astype(np.float32))


def test_compressed_image_is_not_called_truncated(tmp_path: Path) -> None:
    from astropipe.calibration.frames import read_info, read_region

    data = np.arange(400, dtype=np.float32).reshape(20, 20)
    comp = fits.CompImageHDU(data, compression_type="GZIP_2")
    comp.header["IMAGETYP"] = "LIGHT"
    path = tmp_path / "comp.fits"
    fits.HDUList([fits.PrimaryHDU(), comp]).writeto(path)
    info = read_info(path)
    assert info.layout is None  # read through astropy's section
    np.testing.assert_array_equal(read_region(info, slice(3, 7)), data[3:7])


@pytest.mark.parametrize(("card", "match"), [
    ("BITPIX  =                   24", r"BITPIX=24 is not a FITS pixel type"),
    ("BSCALE  = 'abc'", r"BSCALE='abc' is not a number"),
])  # fmt: skip
def test_bad_scaling_keywords_name_file_and_keyword(tmp_path: Path, card: str, match: str) -> None:
    path = tmp_path / "bad.fits"
    _int_image(path, blank=False)
    raw = path.read_bytes()
    key = card[:8].encode()
    start = next(i for i in range(0, 2880, 80) if raw[i : i + 8] == key)  # astropy would refuse
    path.write_bytes(raw[:start] + card.ljust(80).encode() + raw[start + 80 :])
    with pytest.raises(InputFileError, match=rf"^{path}: {match}"):
        read_primary(path)
