"""fits_to_zarr: clear errors for bad inputs, header corrections, config validation."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from astropy.io import fits

from astropipe.errors import ConfigError, GridMismatchError, InputFileError, MissingInputError
from astropipe.zarrcube import headers as H
from astropipe.zarrcube.simulate import SimulationConfig, simulate_series
from astropipe.zarrcube.stage import run
from zarr_helpers import REAL, ROOT, make_lwa, params


@pytest.fixture
def series(tmp_path: Path) -> tuple[Path, list[Path]]:
    inputs = tmp_path / "in"
    return inputs, make_lwa(inputs)


def test_grid_mismatch_between_subbands_names_both_files(series) -> None:
    inputs, files = series
    with fits.open(files[4], mode="update") as hdul:
        hdul[0].header["CDELT1"] = -2.5
    with pytest.raises(GridMismatchError) as err:
        run(params(inputs, inputs.parent / "x.zarr"), collection="lwa")
    msg = str(err.value)
    assert files[4].name in msg and files[3].name in msg  # same time step, first file is ref
    assert "CDELT1 -2.0 vs -2.5" in msg or "CDELT1 -2.5 vs -2.0" in msg
    assert not (inputs.parent / "x.zarr").exists()


def test_grid_mismatch_on_append_names_the_stored_grid(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    make_lwa(inputs, n_times=2)
    out = tmp_path / "x.zarr"
    run(params(inputs, out), collection="lwa")
    late = tmp_path / "late"
    files = make_lwa(late, n_times=3)
    for f in files[-3:]:
        with fits.open(f, mode="update") as hdul:
            hdul[0].header["CDELT2"] = 2.5  # the l/m grid changes (a moved phase centre would not)
        shutil.copy2(f, inputs / f.name)
    with pytest.raises(GridMismatchError, match=r"CDELT2 2\.0 vs 2\.5") as err:
        run(params(inputs, out), collection="lwa")
    assert "070001_41MHz" in str(err.value) and files[-3].name in str(err.value)


def test_truncated_fits(series) -> None:
    inputs, files = series
    data = files[7].read_bytes()
    files[7].write_bytes(data[: len(data) - 5000])
    with pytest.raises(InputFileError, match=rf"{files[7].name}: FITS file is truncated"):
        run(params(inputs, inputs.parent / "x.zarr"), collection="lwa")


def test_not_fits(series) -> None:
    inputs, files = series
    files[2].write_bytes(b"<html>503 Service Unavailable</html>" * 100)
    with pytest.raises(InputFileError, match=rf"{files[2].name}: not a readable FITS file"):
        run(params(inputs, inputs.parent / "x.zarr"), collection="lwa")


def test_missing_frequency(series) -> None:
    inputs, files = series
    gone = next(f for f in files if f.name.startswith("20240524_070011_46MHz"))
    gone.unlink()
    with pytest.raises(MissingInputError, match=r"time step 20240524_070011: no file for 46 MHz I"):
        run(params(inputs, inputs.parent / "x.zarr"), collection="lwa")


def test_frequency_axis_cannot_change_on_append(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    make_lwa(inputs, n_times=1)
    out = tmp_path / "x.zarr"
    run(params(inputs, out), collection="lwa")
    for f in inputs.iterdir():
        f.unlink()
    other = make_lwa(tmp_path / "other", n_times=2, freqs_mhz=(41.0, 46.0))
    for f in other[2:]:
        shutil.copy2(f, inputs / f.name)
    with pytest.raises(GridMismatchError, match=r"frequency_hz"):
        run(params(inputs, out), collection="lwa")


def test_missing_time_uses_name_or_fails(series, tmp_path: Path) -> None:
    inputs, files = series
    for f in files[:3]:  # first time step: no DATE-OBS at all
        with fits.open(f, mode="update") as hdul:
            del hdul[0].header["DATE-OBS"]
    out = tmp_path / "x.zarr"
    summary = run(params(inputs, out), collection="lwa")
    assert "DATE-OBS missing: time taken from the file name" in summary["header_corrections"]
    # a stored time step whose files are gone while an earlier one arrives
    for f in files[:3]:
        f.unlink()
    early = make_lwa(tmp_path / "early", n_times=1)
    for f in early:
        shutil.copy2(f, inputs / f.name.replace("070001", "065959"))
    with pytest.raises(MissingInputError, match=r"stored time step 20240524_070001 moves"):
        run(params(inputs, out), collection="lwa")


def test_bad_names_and_empty_inputs(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    with pytest.raises(MissingInputError, match=r"no file matches"):
        run(params(inputs, tmp_path / "x.zarr"), collection="lwa")
    shutil.copy2(REAL, inputs / "zenith-I-image.fits")
    with pytest.raises(InputFileError, match=r"does not follow YYYYMMDD_HHMMSS"):
        run(params(inputs, tmp_path / "x.zarr"), collection="lwa")
    with pytest.raises(MissingInputError, match=r"input directory not found"):
        run(params(tmp_path / "nope", tmp_path / "x.zarr"), collection="lwa")


def test_config_errors(tmp_path: Path) -> None:
    p = params(tmp_path, tmp_path / "x.zarr")
    with pytest.raises(ConfigError, match=r"no collection 'ccd'; choose one of \['lwa'\]"):
        run(p, collection="ccd")
    with pytest.raises(ConfigError, match=r"zarr.compressor.name: 'lz5' is not a valid option"):
        run({"zarr": {**p["zarr"], "compressor": {"name": "lz5"}}}, collection="lwa")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['chunk'\]"):
        run({"zarr": {**p["zarr"], "chunk": {}}}, collection="lwa")
    with pytest.raises(ConfigError, match=r"zarr_format: 4"):
        run({"zarr": {**p["zarr"], "zarr_format": 4}}, collection="lwa")


def test_header_corrections() -> None:
    h = fits.getheader(REAL)
    del h["CUNIT1"], h["CUNIT3"], h["BUNIT"]
    fixed, done = H.fix_header(h, radio=True)
    assert fixed["CRVAL1"] == pytest.approx(228.875596426871)
    assert fixed["CUNIT1"] == "deg" and fixed["CUNIT3"] == "Hz" and fixed["BUNIT"] == "Jy/beam"
    assert set(done) == {
        H.Correction.RA_WRAPPED,
        H.Correction.CUNIT_CELESTIAL,
        H.Correction.CUNIT_FREQ,
        H.Correction.BUNIT_MISSING,
    }
    assert h["CRVAL1"] < 0  # the input header is not modified
    assert H.stokes_labels(H.find_axis(h, "STOKES"), where="x") == ["I"]
    assert H.axis_values(H.find_axis(h, "FREQ")) == [68511474.609375]


def test_committed_sample_is_what_the_generator_makes(tmp_path: Path) -> None:
    made = simulate_series(REAL, tmp_path, config=SimulationConfig())
    sample = ROOT / "data" / "sample" / "ovro_lwa" / "simulated"
    assert [p.name for p in made] == sorted(p.name for p in sample.glob("*-I-image.fits"))
    for p in made:
        assert p.read_bytes() == (sample / p.name).read_bytes()
    real_sha = hashlib.sha256(REAL.read_bytes()).hexdigest()
    assert real_sha == "25a0ee2a7e7ad3ebf56f499d2c14041e9f3beb08cdf11d44d56ee71850bfb3d2"


def test_rotated_grid_is_refused(tmp_path: Path) -> None:
    """l/m are computed from CRPIX/CDELT alone, so a PC rotation must not pass silently."""
    files = make_lwa(tmp_path / "in", n_times=1)
    for f in files:
        with fits.open(f, mode="update") as hdul:
            hdul[0].header["PC1_2"] = 0.1
            hdul[0].header["PC2_1"] = -0.1
    with pytest.raises(InputFileError, match=r"PC1_2=0.1 rotates the pixel grid"):
        run(params(tmp_path / "in", tmp_path / "out.zarr"), collection="lwa")
