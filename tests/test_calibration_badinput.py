"""calibrate_images on bad input: unusable header numbers, NaN/inf pixels, and banded work.

Runs on copies of the simulated night in data/sample/ccd/night (256 x 256 frames with injected
cosmic rays), broken here one way at a time.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from astropipe.calibration import stage
from astropipe.calibration.calibrate import COSMIC_RAY, NONFINITE
from astropipe.calibration.config import CalibrationConfig
from astropipe.calibration.frames import HeaderValueError, discover
from astropipe.calibration.masters import build_masters
from astropipe.calibration.plan import make_plan
from astropipe.calibration.science import calibrate_frame
from astropipe.errors import InputFileError

ROOT = Path(__file__).resolve().parents[1]
NIGHT = ROOT / "data/sample/ccd/night"


def params(inputs: Path, **extra: object) -> dict:
    return {"calibration": {"inputs": {"path": str(inputs)}, **extra}, "compute": {"workers": 1}}


@pytest.fixture()
def night(tmp_path: Path) -> Path:
    d = tmp_path / "night"
    shutil.copytree(NIGHT, d)
    return d


def _edit(path: Path, **changes: object) -> None:
    with fits.open(path, mode="update") as hdul:
        for key, value in changes.items():
            hdul[0].header[key] = value


def _as_float(path: Path, change) -> None:
    """Rewrite ``path`` as float32 pixels, after ``change(data)`` (e.g. NaN injected)."""
    with fits.open(path) as hdul:
        data = hdul[0].data.astype(np.float32)
        header = hdul[0].header.copy()
    for key in ("BZERO", "BSCALE", "BLANK"):
        header.remove(key, ignore_missing=True)
    change(data)
    fits.PrimaryHDU(data, header=header).writeto(path, overwrite=True)


def _run(night: Path, work: Path, monkeypatch, **extra: object) -> dict:
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    return stage.run(params(night, **extra))


# --- header numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("bias_03.fits", "XBINNING", "two"),
        ("dark_02.fits", "EXPTIME", "abc"),
        ("flat_R_01.fits", "YBINNING", 1.5),
        ("flat_V_02.fits", "EXPTIME", "NaN"),
    ],
)
def test_bad_number_in_a_calibration_frame_names_file_and_keyword(
    night, tmp_path, monkeypatch, name, key, value
):
    _edit(night / name, **{key: value})
    work = tmp_path / "work"
    with pytest.raises(HeaderValueError) as err:
        _run(night, work, monkeypatch)
    message = str(err.value)
    assert isinstance(err.value, InputFileError)
    assert "\n" not in message and name in message and f"{key}={value!r}" in message, message
    assert list(work.iterdir()) == []


@pytest.mark.parametrize(("key", "value"), [("EXPTIME", "120 s"), ("GAIN", "high")])
def test_bad_number_in_a_science_frame_quarantines_it(night, tmp_path, monkeypatch, key, value):
    _edit(night / "sci_R_02.fits", **{key: value})
    metrics = _run(night, tmp_path / "work", monkeypatch, cosmics={"enabled": False})
    assert sorted(metrics["science"]) == ["sci_R_01.fits", "sci_V_01.fits", "sci_V_02.fits"]
    (reason,) = metrics["quarantined"].values()
    assert list(metrics["quarantined"]) == ["sci_R_02.fits"]
    assert reason.startswith(f"sci_R_02.fits: header keyword {key}={value!r} is not a finite")
    written = sorted(p.name for p in (tmp_path / "work/data/interim/calibration/science").iterdir())
    assert written == ["sci_R_01.fits", "sci_V_01.fits", "sci_V_02.fits"]
    # the reasons are in the report; the DVC metric keeps the counts only
    on_disk = json.loads((tmp_path / "work/reports/calibrate_images.json").read_text())
    assert on_disk["quarantined"] == metrics["quarantined"]
    counts = json.loads((tmp_path / "work/reports/metrics/calibrate_images.json").read_text())
    assert counts["frames"]["science"] == 3 and "quarantined" not in counts


def test_clean_night_quarantines_nothing(night):
    frames, _ = discover(night, quarantine=(q := {}))
    assert len(frames) == 18 and q == {}


# --- NaN / inf pixels ------------------------------------------------------------------------


def test_nan_in_a_bias_names_the_bias_not_the_flat(night, tmp_path, monkeypatch):
    """Regression: the error named flat_R_01.fits ("flat frame has median nan")."""

    def poke(data):
        data[40, 17] = np.nan

    _as_float(night / "bias_04.fits", poke)
    with pytest.raises(InputFileError) as err:
        _run(night, tmp_path / "work", monkeypatch)
    message = str(err.value)
    assert "bias_04.fits" in message and "flat" not in message.split(";")[0], message
    assert "1 NaN/inf pixel(s)" in message and "row 40, column 17" in message


def _masters(directory: Path, cfg: CalibrationConfig):
    frames, _ = discover(directory)
    plan = make_plan(frames, directory=directory)
    return plan, build_masters(plan, cfg, tile_rows=64, workers=1)


def _calibrate(directory: Path, name: str, cfg: CalibrationConfig, band_rows=None):
    plan, built = _masters(directory, cfg)
    sp = next(s for s in plan.science if s.frame.name == name)
    return calibrate_frame(
        sp.frame,
        cfg,
        bias=built[sp.bias],
        flat=built[sp.flat],
        dark=built[sp.dark],
        band_rows=band_rows,
    )


def test_nan_and_inf_science_pixels_are_masked_and_do_not_poison_neighbours(night):
    cfg = CalibrationConfig()
    clean = _calibrate(NIGHT, "sci_V_01.fits", cfg)

    def poke(data):
        data[100:104, 100:104] = np.nan  # a 4x4 hole
        data[30, 150:160] = np.inf  # a hot row segment
        data[200, 30] = -np.inf

    _as_float(night / "sci_V_01.fits", poke)
    cal = _calibrate(night, "sci_V_01.fits", cfg)
    probe = np.zeros(cal.mask.shape)
    poke(probe)
    bad = ~np.isfinite(probe)
    assert bad.sum() == 27
    assert np.array_equal((cal.mask & NONFINITE) != 0, bad)
    assert np.isnan(cal.sci[bad]).all() and (cal.err[bad] == 0).all()
    assert np.isfinite(cal.sci[~bad]).all() and np.isfinite(cal.err).all()
    assert not (cal.mask[bad] & COSMIC_RAY).any()
    # Cosmic rays found everywhere else are exactly those of the frame without holes: nothing
    # next to a NaN/inf is flagged because of it.
    assert clean.cosmic_pixels > 20
    assert np.array_equal(cal.mask & COSMIC_RAY, clean.mask & COSMIC_RAY)
    assert np.array_equal(cal.sci[~bad], clean.sci[~bad])


# --- bands -----------------------------------------------------------------------------------


@pytest.mark.parametrize("band_rows", [37, 128])
def test_banded_calibration_and_cosmics_equal_the_whole_frame(band_rows):
    """Every step is per pixel, and astroscrappy runs on bands with cosmics_margin() rows of
    context: the banded SCI/ERR/MASK are bit-identical to the whole-frame ones."""
    cfg = CalibrationConfig()
    plan, built = _masters(NIGHT, cfg)
    for sp in plan.science[:2]:
        kw = dict(bias=built[sp.bias], flat=built[sp.flat], dark=built[sp.dark])
        whole = calibrate_frame(sp.frame, cfg, **kw)
        banded = calibrate_frame(sp.frame, cfg, band_rows=band_rows, **kw)
        assert whole.cosmic_pixels > 20
        for plane in ("sci", "err", "mask"):
            assert getattr(banded, plane).tobytes() == getattr(whole, plane).tobytes(), plane


def test_a_margin_too_small_would_change_the_mask():
    """The equality above is not vacuous: without context rows the band edges differ."""
    from astropipe.calibration.cosmics import detect_cosmics_banded

    cfg = CalibrationConfig()
    cal = _calibrate(NIGHT, "sci_V_02.fits", cfg)
    args = dict(err=cal.err, read_noise=cal.read_noise, saturation=1e9, bad=None, cfg=cfg.cosmics)
    whole = detect_cosmics_banded(cal.sci, band_rows=256, **args)
    tight = detect_cosmics_banded(cal.sci, band_rows=16, margin=0, **args)
    safe = detect_cosmics_banded(cal.sci, band_rows=16, **args)
    assert np.array_equal(safe, whole)
    assert not np.array_equal(tight, whole)


def test_science_task_counts_are_logged_by_the_stage_on_processes(
    night, tmp_path, monkeypatch, caplog
):
    """Review 2.1: the NaN/inf warning and the "calibrated" line were logged inside the science
    task, so a processes or cluster run lost them; the task returns the counts and the stage
    process logs them."""
    import logging

    def poke(data):
        data[100:104, 100:104] = np.nan

    _as_float(night / "sci_V_01.fits", poke)
    caplog.set_level(logging.INFO, logger="astropipe")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    p = params(night, cosmics={"enabled": False})
    metrics = stage.run({**p, "compute": {"scheduler": "processes", "workers": 2}})
    assert metrics["science"]["sci_V_01.fits"]["nonfinite_pixels"] == 16
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("astropipe.calibration")]
    nan = [m for m in lines if "NaN/inf pixel(s)" in m]
    assert len(nan) == 1 and "sci_V_01.fits: 16 NaN/inf pixel(s)" in nan[0], lines
    done = sorted(m.split(":")[0] for m in lines if m.endswith("cosmic-ray pixels"))
    assert done == sorted(metrics["science"]), lines
