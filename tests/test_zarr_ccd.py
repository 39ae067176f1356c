"""fits_to_zarr@ccd: calibrated frames (SCI, ERR, MASK) -> (time, y, x) with filter/exposure."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS, FITSFixedWarning

from astropipe.errors import InputFileError
from astropipe.zarrcube.stage import run
from zarr_helpers import params, tree_digest, write_ccd

DATES = ["2024-03-01T02:00:00", "2024-03-01T02:01:00.5", "2024-03-01T02:02:00"]


@pytest.fixture
def frames(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    inputs = tmp_path / "science"
    inputs.mkdir()
    # written out of time order, with one integer SCI frame carrying BSCALE/BZERO
    sci = [
        write_ccd(inputs / "c.fits", date=DATES[2], filt="R", exptime=60.0, seed=2),
        write_ccd(inputs / "a.fits", date=DATES[0], filt="V", exptime=30.0, seed=0),
        write_ccd(inputs / "b.fits", date=DATES[1], filt="V", exptime=30.0, seed=1, int_sci=True),
    ]
    return inputs, [sci[1], sci[2], sci[0]]


def test_ccd_store(frames, tmp_path: Path) -> None:
    inputs, sci = frames
    out = tmp_path / "ccd.zarr"
    summary = run(params(inputs, out, kind="ccd"), collection="ccd")
    assert summary["time_steps"] == 3
    ds = xr.open_zarr(out).load()
    assert ds.SCI.dims == ("time", "y", "x") and ds.SCI.shape == (3, 40, 50)
    got_ms = ds.time.values.astype("datetime64[ms]")
    want_ms = np.array([Time(d).datetime64 for d in DATES]).astype("datetime64[ms]")
    assert np.abs(got_ms - want_ms).max() <= np.timedelta64(1, "ms")
    for k in range(3):
        np.testing.assert_array_equal(ds.SCI.values[k], sci[k])
    with fits.open(inputs / "b.fits", do_not_scale_image_data=True) as hdul:
        raw = hdul["SCI"].data.astype(np.float64)
        assert hdul["SCI"].header["BSCALE"] == 0.1 and hdul["SCI"].header["BZERO"] == 3.0
        mask = hdul["MASK"].data
    np.testing.assert_allclose(ds.SCI.values[1], raw * 0.1 + 3.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.MASK.values[1], mask)
    assert ds.MASK.dtype == np.uint16 and (ds.ERR.values == 5.0).all()
    assert list(ds["filter"].values) == ["V", "V", "R"]
    np.testing.assert_array_equal(ds.exposure.values, [30.0, 30.0, 60.0])
    assert ds.exposure.attrs["units"] == "s" and ds.SCI.attrs["units"] == "electron"
    # WCS present: RA/Dec per pixel as astropy.wcs gives them (RA wrapped from -10.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        w = WCS(fits.getheader(inputs / "a.fits", "SCI"))
    y, x = np.mgrid[0:40, 0:50]
    ra, dec = w.all_pix2world(x, y, 0)
    np.testing.assert_allclose(ds.ra.values, np.mod(ra, 360.0), atol=1e-9)
    np.testing.assert_allclose(ds.dec.values, dec, atol=1e-9)
    corrections = ds.attrs["astropipe"]["header_corrections"]
    assert any("BSCALE/BZERO" in c for c in corrections)
    assert any("negative RA" in c for c in corrections)


def test_ccd_append_matches_one_build(frames, tmp_path: Path) -> None:
    inputs, _ = frames
    one = tmp_path / "one.zarr"
    run(params(inputs, one, kind="ccd"), collection="ccd")
    later = inputs / "c.fits"
    hold = tmp_path / "c.fits"
    later.rename(hold)
    two = tmp_path / "two.zarr"
    run(params(inputs, two, kind="ccd"), collection="ccd")
    hold.rename(later)
    assert run(params(inputs, two, kind="ccd"), collection="ccd")["written"] == 1
    assert tree_digest(two) == tree_digest(one)


def test_ccd_without_wcs_and_errors(tmp_path: Path) -> None:
    inputs = tmp_path / "science"
    inputs.mkdir()
    write_ccd(inputs / "a.fits", date=DATES[0], wcs=False)
    out = tmp_path / "ccd.zarr"
    run(params(inputs, out, kind="ccd"), collection="ccd")
    ds = xr.open_zarr(out)
    assert "ra" not in ds.coords and ds.SCI.shape == (1, 40, 50)
    # the same DATE-OBS twice
    write_ccd(inputs / "b.fits", date=DATES[0], wcs=False)
    with pytest.raises(InputFileError, match=r"b\.fits: same DATE-OBS .* as .*a\.fits"):
        run(params(inputs, out, kind="ccd"), collection="ccd")
    (inputs / "b.fits").unlink()
    # no DATE-OBS
    write_ccd(inputs / "c.fits", date=DATES[1], wcs=False)
    with fits.open(inputs / "c.fits", mode="update") as hdul:
        del hdul[0].header["DATE-OBS"]
    with pytest.raises(InputFileError, match=r"c\.fits: header has no DATE-OBS"):
        run(params(inputs, out, kind="ccd"), collection="ccd")
    (inputs / "c.fits").unlink()
    # no MASK extension
    hdul = fits.open(inputs / "a.fits")
    fits.HDUList([h.copy() for h in hdul if h.name != "MASK"]).writeto(inputs / "d.fits")
    hdul.close()
    with fits.open(inputs / "d.fits", mode="update") as h:
        h[0].header["DATE-OBS"] = DATES[2]
    with pytest.raises(InputFileError, match=r"d\.fits: missing extension\(s\) \['MASK'\]"):
        run(params(inputs, out, kind="ccd"), collection="ccd")
