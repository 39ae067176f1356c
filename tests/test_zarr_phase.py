"""fits_to_zarr@lwa on a zenith-phased series: CRVAL1 follows sidereal time, the l/m grid does not.

The series is simulated from the real OVRO-LWA header (data/sample/ovro_lwa) with the phase
centre of each 10 s snapshot at its own zenith, as real snapshots are.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from astropipe.errors import ConfigError, GridMismatchError, InputFileError
from astropipe.zarrcube.grid import Grid, sky_coordinates
from astropipe.zarrcube.manifest import read_manifest
from astropipe.zarrcube.simulate import SIDEREAL_DEG_PER_S
from astropipe.zarrcube.stage import run
from zarr_helpers import make_lwa, params, tree_digest


@pytest.fixture
def zenith(tmp_path: Path) -> tuple[Path, list[Path]]:
    inputs = tmp_path / "in"
    return inputs, make_lwa(inputs, zenith_phased=True)


def _header(path: Path) -> fits.Header:
    return fits.getheader(path)


def test_series_is_really_zenith_phased(zenith) -> None:
    _, files = zenith
    ra = [_header(f)["CRVAL1"] for f in files[::3]]  # one file per time step
    assert len(set(ra)) == 4
    np.testing.assert_allclose(np.diff(ra), 10.0 * SIDEREAL_DEG_PER_S, rtol=1e-12)
    assert 10.0 * SIDEREAL_DEG_PER_S == pytest.approx(0.0418, abs=1e-4)
    assert {_header(f)["CRVAL2"] for f in files} == {_header(files[0])["CRVAL2"]}


def test_accepted_with_the_phase_centre_per_time_step(zenith) -> None:
    inputs, files = zenith
    out = inputs.parent / "lwa.zarr"
    summary = run(params(inputs, out), collection="lwa")
    assert summary["time_steps"] == 4 and summary["written"] == 4
    ds = xr.open_zarr(out).load()
    headers = [_header(f) for f in files[::3]]
    # the headers' CRVAL per step (RA wrapped into [0, 360): the real header's is negative)
    want_ra = [np.mod(h["CRVAL1"], 360.0) for h in headers]
    want_dec = [h["CRVAL2"] for h in headers]
    np.testing.assert_allclose(ds.phase_center_ra.values, want_ra, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ds.phase_center_dec.values, want_dec)
    assert ds.phase_center_ra.dims == ("time",) and ds.phase_center_ra.attrs["units"] == "deg"
    assert "ra" not in ds.coords and "dec" not in ds.coords  # they would differ per step
    # the manifest keeps each step's WCS; pixel RA/Dec of step 3 from it = astropy on its file
    manifest = read_manifest(out)
    assert manifest is not None
    assert [s.wcs["CRVAL1"] for s in manifest.timesteps] == list(ds.phase_center_ra.values)
    assert "CRVAL1" not in manifest.static["grid"]["wcs"]  # the grid is the l/m grid only
    assert ds.attrs["wcs"]["CRVAL1"] == want_ra[0]  # root wcs: the first time step's
    assert ds.attrs["direction"]["projection"] == "SIN"
    n = ds.sizes["l"]
    ra, dec = sky_coordinates(
        Grid(shape=(n, n), wcs=manifest.step_wcs(3)), slice(0, n), slice(0, n)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        w = WCS(headers[3]).celestial
    y, x = np.mgrid[0:n, 0:n]
    ra_ref, dec_ref = w.all_pix2world(x, y, 0)
    inside = ~np.isnan(ra_ref)
    np.testing.assert_allclose(ra[inside], np.mod(ra_ref[inside], 360.0), atol=1e-9)
    np.testing.assert_allclose(dec[inside], dec_ref[inside], atol=1e-9)


def test_batches_give_the_bytes_of_one_build(zenith, tmp_path: Path) -> None:
    inputs, files = zenith
    whole = tmp_path / "whole.zarr"
    run(params(inputs, whole), collection="lwa")
    late = tmp_path / "late"
    late.mkdir()
    for f in files[:6]:  # steps 0 and 1 arrive after 2 and 3
        shutil.move(f, late / f.name)
    out = tmp_path / "batched.zarr"
    run(params(inputs, out), collection="lwa")
    for f in late.iterdir():
        shutil.move(f, inputs / f.name)
    summary = run(params(inputs, out), collection="lwa")
    assert summary["time_steps"] == 4
    assert tree_digest(out) == tree_digest(whole)


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [("CDELT1", -2.5, r"CDELT1 -2\.0 vs -2\.5"), ("CRPIX2", 30.0, r"CRPIX2 32\.5625 vs 30\.0")],
)
def test_a_changed_pixel_grid_is_still_refused(zenith, key, value, shown) -> None:
    inputs, files = zenith
    with fits.open(files[7], mode="update") as hdul:  # time step 2
        hdul[0].header[key] = value
    out = inputs.parent / "x.zarr"
    with pytest.raises(GridMismatchError, match=shown) as err:
        run(params(inputs, out), collection="lwa")
    msg = str(err.value)
    assert "\n" not in msg and files[7].name in msg and "does not share the pixel grid" in msg
    assert "CRVAL1" not in msg  # the phase centre is not part of the grid
    assert not out.exists()


def test_a_changed_image_size_is_refused_on_append(zenith, tmp_path: Path) -> None:
    inputs, _ = zenith
    out = tmp_path / "x.zarr"
    run(params(inputs, out), collection="lwa")
    bigger = tmp_path / "bigger"
    for f in make_lwa(bigger, zenith_phased=True, n_times=5, size=128)[-3:]:
        shutil.copy2(f, inputs / f.name)
    with pytest.raises(GridMismatchError, match=r"shape \(ny, nx\) \(64, 64\) vs \(128, 128\)"):
        run(params(inputs, out), collection="lwa")


def test_subbands_of_one_snapshot_share_its_phase_centre(zenith) -> None:
    inputs, files = zenith
    with fits.open(files[4], mode="update") as hdul:
        hdul[0].header["CRVAL1"] = hdul[0].header["CRVAL1"] + 1.0
    with pytest.raises(GridMismatchError, match="does not share the phase centre") as err:
        run(params(inputs, inputs.parent / "x.zarr"), collection="lwa")
    assert files[4].name in str(err.value) and files[3].name in str(err.value)


def test_a_store_of_the_previous_layout_is_refused_untouched(zenith) -> None:
    inputs, _ = zenith
    out = inputs.parent / "lwa.zarr"
    run(params(inputs, out), collection="lwa")
    root = out / "zarr.json"
    doc = json.loads(root.read_text())
    del doc["attributes"]["astropipe"]["layout"]["version"]  # as written before version 2
    root.write_text(json.dumps(doc))
    before = tree_digest(out)
    with pytest.raises(ConfigError) as err:
        run(params(inputs, out), collection="lwa")
    msg = str(err.value)
    assert "store layout version: 1 stored vs 2" in msg and "zarr.rebuild=true" in msg
    assert tree_digest(out) == before
    summary = run(params(inputs, out, rebuild=True), collection="lwa")
    assert summary["written"] == 4


def test_celestial_unit_other_than_deg_or_rad_is_refused(zenith) -> None:
    inputs, files = zenith
    with fits.open(files[0], mode="update") as hdul:  # the file that defines the grid
        hdul[0].header["CUNIT1"] = "arcmin"
    with pytest.raises(InputFileError, match=r"CUNIT1='arcmin'.*'deg' or 'rad'") as err:
        run(params(inputs, inputs.parent / "x.zarr"), collection="lwa")
    assert files[0].name in str(err.value) and "\n" not in str(err.value)
