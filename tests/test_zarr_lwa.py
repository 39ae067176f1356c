"""fits_to_zarr@lwa: values, coordinates, corrections and formats on a simulated series."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS, FITSFixedWarning

from astropipe.zarrcube.grid import Grid, sky_coordinates
from astropipe.zarrcube.manifest import read_manifest
from astropipe.zarrcube.stage import run
from zarr_helpers import make_lwa, params, tree_digest


def _open(store: Path, **kw) -> xr.Dataset:
    return xr.open_zarr(store, **kw).load()


@pytest.fixture
def series(tmp_path: Path) -> tuple[Path, list[Path]]:
    inputs = tmp_path / "in"
    return inputs, make_lwa(inputs)


def test_values_equal_fits_with_bscale_bzero(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    files = make_lwa(inputs, dtype="int16")
    out = tmp_path / "lwa.zarr"
    summary = run(params(inputs, out), collection="lwa")
    assert summary["time_steps"] == 4 and summary["written"] == 4
    ds = _open(out, decode_times=False)
    freqs = ds.frequency.values
    for path in files:
        with fits.open(path, do_not_scale_image_data=True) as hdul:
            raw = hdul[0].data[0, 0].astype(np.float64)
            h = hdul[0].header
            assert h["BSCALE"] != 1.0 and h["BZERO"] != 0.0
            expected = raw * h["BSCALE"] + h["BZERO"]
            t = Time(h["DATE-OBS"], scale="utc").mjd
            f = h["CRVAL3"]
        it = int(np.argmin(abs(ds.time.values - t)))
        assert ds.time.values[it] == pytest.approx(t, abs=1e-9)
        got = ds.SKY.isel(time=it, polarization=0).sel(frequency=f).values  # (l, m) = (x, y)
        np.testing.assert_allclose(got.T, expected, rtol=1e-6, atol=1e-6 * abs(expected).max())
        assert ds.BMAJ.isel(time=it).sel(frequency=f).item() == pytest.approx(h["BMAJ"])
    corrections = ds.attrs["astropipe"]["header_corrections"]
    assert any("BSCALE/BZERO" in c for c in corrections)
    assert any("negative RA" in c for c in corrections)
    np.testing.assert_array_equal(ds.frequency.values, sorted(freqs))


def test_sky_coordinates_equal_astropy_wcs(series) -> None:
    inputs, files = series
    out = inputs.parent / "lwa.zarr"
    run(params(inputs, out), collection="lwa")
    ds = _open(out)
    header = fits.getheader(files[0])  # the raw header, CRVAL1 < 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        w = WCS(header).celestial
    ny, nx = ds.sizes["m"], ds.sizes["l"]
    # l, m: ((i + 1) - CRPIX) * CDELT * pi/180, exactly (docs/fits_to_zarr.md)
    deg = np.pi / 180.0
    assert (
        ds.l.values.tobytes()
        == ((np.arange(nx) + 1 - header["CRPIX1"]) * header["CDELT1"] * deg).tobytes()
    )
    assert (
        ds.m.values.tobytes()
        == ((np.arange(ny) + 1 - header["CRPIX2"]) * header["CDELT2"] * deg).tobytes()
    )
    # RA/Dec per pixel are not stored (they change with the phase centre); the WCS of a step
    # (shared grid + its phase centre) gives them, equal to astropy.wcs on the file itself
    assert "ra" not in ds.coords and "dec" not in ds.coords
    manifest = read_manifest(out)
    assert manifest is not None
    ra, dec = sky_coordinates(
        Grid(shape=(ny, nx), wcs=manifest.step_wcs(0)), slice(0, nx), slice(0, ny)
    )
    y, x = np.mgrid[0:ny, 0:nx]
    ra_ref, dec_ref = w.all_pix2world(x, y, 0)
    beyond = np.isnan(ra_ref)
    assert beyond.any() and (~beyond).any()  # all-sky SIN: NaN beyond the horizon
    np.testing.assert_array_equal(np.isnan(ra), beyond)
    np.testing.assert_allclose(ra[~beyond], np.mod(ra_ref[~beyond], 360.0), atol=1e-9)
    np.testing.assert_allclose(dec[~beyond], dec_ref[~beyond], atol=1e-9)
    # zenith pixel: CRVAL wrapped into [0, 360)
    assert ds.attrs["wcs"]["CRVAL1"] == pytest.approx(-131.124403573129 + 360.0)
    assert ds.phase_center_ra.values == pytest.approx([-131.124403573129 + 360.0] * 4)
    assert list(ds.polarization.values) == ["I"]
    assert ds.SKY.dims == ("time", "frequency", "polarization", "l", "m")


def test_point_source_recovered(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    make_lwa(inputs, source_pix=(40, 25), source_jy=1000.0)
    out = tmp_path / "lwa.zarr"
    run(params(inputs, out), collection="lwa")
    sky = _open(out).SKY.isel(polarization=0).values  # (time, freq, l, m)
    # the source brightens by 10 % per step (simulate.py), the real sky does not
    diff = sky[1] - sky[0]
    for fi, f_mhz in enumerate((41.0, 46.0, 50.0)):
        peak = np.unravel_index(np.argmax(diff[fi]), diff[fi].shape)
        assert peak == (40, 25)  # (l, m) = (x, y) of the injected source
        expected = 100.0 * (f_mhz / 50.0) ** -0.7  # 10 % of 1000 Jy, spectral index -0.7
        assert diff[fi][peak] == pytest.approx(expected, abs=5 * 2.0 * np.sqrt(2))


def test_zarr_v2_and_compressors(series) -> None:
    inputs, _ = series
    blosc = {"name": "blosc", "level": 5, "cname": "lz4", "shuffle": "shuffle"}
    none = {"name": "none", "level": 0, "cname": "lz4", "shuffle": "shuffle"}
    for fmt, comp in ((2, blosc), (3, none)):
        out = inputs.parent / f"v{fmt}.zarr"
        run(params(inputs, out, zarr_format=fmt, compressor=comp), collection="lwa")
        group = zarr.open_group(out, mode="r")
        assert group.metadata.zarr_format == fmt
        ds = _open(out)
        assert ds.sizes == {"time": 4, "frequency": 3, "polarization": 1, "l": 64, "m": 64}
        assert ds.SKY.encoding["chunks"] == (1, 3, 1, 32, 32)
    ref = _open(inputs.parent / "v3.zarr").SKY.values
    np.testing.assert_array_equal(_open(inputs.parent / "v2.zarr").SKY.values, ref)
    # format 2 is deterministic too, and a rebuild in another place gives the same bytes
    again = inputs.parent / "v2-again.zarr"
    run(params(inputs, again, zarr_format=2, compressor=blosc), collection="lwa")
    assert tree_digest(again) == tree_digest(inputs.parent / "v2.zarr")
    assert (again / ".zmetadata").is_file()


def test_rerun_skips_and_output_is_deterministic(series, tmp_path: Path) -> None:
    inputs, _ = series
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    run(params(inputs, a), collection="lwa")
    first = tree_digest(a)
    summary = run(params(inputs, a), collection="lwa")
    assert summary["written"] == 0 and summary["skipped"] == 4
    assert tree_digest(a) == first
    run(params(inputs, b), collection="lwa")
    digest_b = tree_digest(b)
    assert digest_b == first  # byte-identical across builds (output path is not recorded)
    summary = run(params(inputs, a, rebuild=True), collection="lwa")
    assert summary["written"] == 4
    assert tree_digest(a) == first
    recorded = json.loads((a / "zarr.json").read_text())["attributes"]["astropipe"]
    files = {f for e in recorded["timesteps"] for f in e["files"]}
    assert len(files) == 12 and recorded["provenance"]["inputs"].keys() == files


def test_dry_run_writes_nothing(series) -> None:
    inputs, _ = series
    out = inputs.parent / "dry.zarr"
    summary = run(params(inputs, out), collection="lwa", dry_run=True)
    assert summary["time_steps"] == 4 and summary["written"] == 4
    assert not out.exists() and not Path(f"{out}.metrics.json").exists()


def test_changed_input_is_rewritten(series) -> None:
    inputs, files = series
    out = inputs.parent / "lwa.zarr"
    run(params(inputs, out), collection="lwa")
    with fits.open(files[5], mode="update") as hdul:
        hdul[0].data[0, 0, 0, 0] = 1234.5
    summary = run(params(inputs, out), collection="lwa")
    assert summary["written"] == 1
    ds = _open(out)
    step, freq = divmod(5, 3)
    assert ds.SKY.values[step, freq, 0, 0, 0] == np.float32(1234.5)


def test_progress_bars_and_metrics(series, capsys) -> None:
    inputs, _ = series
    out = inputs.parent / "lwa.zarr"
    summary = run(params(inputs, out), collection="lwa", progress=True)
    err = capsys.readouterr().err
    assert "fits_to_zarr@lwa" in err and "headers" in err
    metrics = json.loads(Path(f"{out}.metrics.json").read_text())
    per_run = {"written", "skipped", "repaired"}  # in the returned summary, not the metric
    assert metrics == {k: v for k, v in summary.items() if k not in per_run}
    assert metrics["input_files"] == 12
    ds = _open(out, decode_times=False)
    assert np.all(np.diff(ds.time.values) > 0) and (ds.step_complete.values == 1).all()
    # the bars change nothing on disk: a quiet build gives the same store and metric
    quiet = inputs.parent / "quiet.zarr"
    assert run(params(inputs, quiet), collection="lwa", progress=False) == {
        **summary,
        "store": str(quiet),
    }
    assert capsys.readouterr().err == ""
    assert tree_digest(quiet) == tree_digest(out)


def test_partial_edge_tiles_hold_the_fits_pixels(series) -> None:
    inputs, files = series
    out = inputs.parent / "tiles.zarr"
    p = params(inputs, out)
    p["zarr"]["chunks"]["sky"] = 24  # 64 px = 24 + 24 + 16: edge tiles are partial
    run(p, collection="lwa")
    ds = _open(out)
    assert ds.SKY.encoding["chunks"] == (1, 3, 1, 24, 24)
    for k, path in enumerate(files):
        step, freq = divmod(k, 3)
        expected = fits.getdata(path)[0, 0].astype(np.float32)
        np.testing.assert_array_equal(ds.SKY.values[step, freq, 0], expected.T)
