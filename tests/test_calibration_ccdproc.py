"""astropipe's masters and calibrated pixels against ccdproc on the same inputs (1e-6 relative)."""

from __future__ import annotations

import warnings
from pathlib import Path

import astropy.units as u
import ccdproc  # noqa: E402  (a test dependency: a missing one must fail, not skip)
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from astropipe.calibration.calibrate import (
    flat_correct,
    gain_correct,
    subtract_bias,
    subtract_dark,
    subtract_overscan,
    trim,
)
from astropipe.calibration.combine import ClipConfig, CombineConfig, combine_stack, combine_tiled
from astropipe.calibration.config import CalibrationConfig
from astropipe.calibration.frames import discover, read_info
from astropipe.calibration.masters import build_masters
from astropipe.calibration.plan import make_plan
from astropipe.calibration.science import calibrate_frame

ROOT = Path(__file__).resolve().parents[1]
NIGHT = ROOT / "data/sample/ccd/night"
REAL = ROOT / "data/sample/ccd/real"
RTOL = 1e-6


def assert_close(ours: np.ndarray, ref: np.ndarray) -> None:
    """Equal within 1e-6 relative; values near zero are compared to 1e-6 of the frame's scale."""
    ref = np.asarray(ref, dtype=np.float64)
    scale = float(np.nanmax(np.abs(ref)))
    np.testing.assert_allclose(ours, ref, rtol=RTOL, atol=RTOL * scale)


def ccd_prepared(path: Path) -> CCDData:
    """ccdproc's reduction of a raw frame: overscan (median), trim, gain → electrons."""
    header = fits.getheader(path)
    ccd = CCDData.read(path, unit="adu")
    ccd = ccdproc.subtract_overscan(ccd, fits_section=header["BIASSEC"], median=True)
    ccd = ccdproc.trim_image(ccd, fits_section=header["TRIMSEC"])
    return ccdproc.gain_correct(ccd, header["GAIN"] * u.electron / u.adu)


@pytest.fixture(scope="module")
def night_plan():
    frames, _ = discover(NIGHT)
    return make_plan(frames, directory=NIGHT)


@pytest.fixture(scope="module")
def ccdproc_masters(night_plan):
    """Masters built with ccdproc only, following the same recipe as astropipe."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = {m.name: [f.path for f in m.frames] for m in night_plan.masters}
        biases = [ccd_prepared(p) for p in paths["bias_SIMCAM_1x1"]]
        bias = ccdproc.combine(biases, method="median")
        darks = []
        for p in paths["dark_SIMCAM_1x1"]:
            d = ccdproc.subtract_bias(ccd_prepared(p), bias)
            darks.append(d.divide(fits.getheader(p)["EXPTIME"]))  # e- in 1 s
        dark = ccdproc.combine(darks, method="median")
        flats = {}
        for filt in ("V", "R"):
            frames = []
            for p in paths[f"flat_SIMCAM_1x1_{filt}"]:
                f = ccdproc.subtract_bias(ccd_prepared(p), bias)
                f = ccdproc.subtract_dark(
                    f,
                    dark,
                    dark_exposure=1 * u.s,
                    data_exposure=fits.getheader(p)["EXPTIME"] * u.s,
                    scale=True,
                )
                frames.append(f)
            flat = ccdproc.combine(frames, method="median", scale=lambda a: 1 / np.median(a))
            flats[filt] = flat.divide(np.median(flat.data))
    return {"bias": bias, "dark": dark, "flat": flats}


@pytest.fixture(scope="module")
def our_masters(night_plan):
    return build_masters(night_plan, CalibrationConfig(), tile_rows=37)


def test_master_bias_equals_ccdproc_combine(our_masters, ccdproc_masters):
    ours = our_masters["bias_SIMCAM_1x1"]
    assert_close(ours.data, ccdproc_masters["bias"].data)
    assert_close(ours.err, ccdproc_masters["bias"].uncertainty.array)


def test_master_dark_per_second_equals_ccdproc(our_masters, ccdproc_masters):
    assert_close(our_masters["dark_SIMCAM_1x1"].data, ccdproc_masters["dark"].data)


@pytest.mark.parametrize("filt", ["V", "R"])
def test_master_flat_equals_ccdproc(our_masters, ccdproc_masters, filt):
    assert_close(our_masters[f"flat_SIMCAM_1x1_{filt}"].data, ccdproc_masters["flat"][filt].data)


def test_calibrated_science_equals_ccdproc_chain(night_plan, our_masters, ccdproc_masters):
    cfg = CalibrationConfig.from_params({"calibration": {"cosmics": {"enabled": False}}})
    for sp in night_plan.science:
        ours = calibrate_frame(
            sp.frame,
            cfg,
            bias=our_masters[sp.bias],
            flat=our_masters[sp.flat],
            dark=our_masters[sp.dark],
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ccd = ccdproc.subtract_bias(ccd_prepared(sp.frame.path), ccdproc_masters["bias"])
            ccd = ccdproc.subtract_dark(
                ccd,
                ccdproc_masters["dark"],
                dark_exposure=1 * u.s,
                data_exposure=sp.frame.exptime * u.s,
                scale=True,
            )
            ccd = ccdproc.flat_correct(ccd, ccdproc_masters["flat"][sp.frame.filter], norm_value=1)
        assert_close(ours.sci, ccd.data)


def test_verbs_equal_ccdproc_verbs_one_by_one():
    path = NIGHT / "sci_V_01.fits"
    info = read_info(path)
    raw = fits.getdata(path).astype(np.float64)
    rng = np.random.default_rng(3)
    bias = rng.normal(0, 3, info.trimmed_shape)
    dark = rng.uniform(0.01, 0.05, info.trimmed_shape)
    flat = rng.uniform(0.8, 1.2, info.trimmed_shape)
    ccd = CCDData(raw, unit="electron")
    for method in ("median", "mean"):
        ours = subtract_overscan(raw, info.biassec, method=method)
        ref = ccdproc.subtract_overscan(
            ccd, fits_section=info.header["BIASSEC"], median=method == "median"
        )
        assert_close(ours, ref.data)
    ours = trim(subtract_overscan(raw, info.biassec), info.trimsec)
    ref = ccdproc.trim_image(
        ccdproc.subtract_overscan(ccd, fits_section=info.header["BIASSEC"], median=True),
        fits_section=info.header["TRIMSEC"],
    )
    assert_close(ours, ref.data)
    ref = CCDData(ref.data, unit="electron")
    assert_close(
        gain_correct(ours, 1.5), ccdproc.gain_correct(ref, 1.5 * u.dimensionless_unscaled).data
    )
    b = subtract_bias(ours, bias)
    assert_close(b, ccdproc.subtract_bias(ref, CCDData(bias, unit="electron")).data)
    d = subtract_dark(b, dark, 120.0)
    ref_d = ccdproc.subtract_dark(
        CCDData(b, unit="electron"),
        CCDData(dark, unit="electron"),
        dark_exposure=1 * u.s,
        data_exposure=120 * u.s,
        scale=True,
    )
    assert_close(d, ref_d.data)
    f = flat_correct(d, flat)
    ref_f = ccdproc.flat_correct(CCDData(d, unit="electron"), CCDData(flat, unit=""), norm_value=1)
    assert_close(f, ref_f.data)


def test_saao_raw_overscan_and_trim_equal_ccdproc():
    """The real SAAO frame: BIASSEC=[4:13,1:520], TRIMSEC=[17:528,1:520]."""
    path = REAL / "saao_1.0m_a8280271.fits"
    info = read_info(path)
    assert info.kind == "science" and info.shape == (520, 536)
    assert info.biassec.slices == (slice(0, 520), slice(3, 13))
    assert info.trimsec.slices == (slice(0, 520), slice(16, 528))
    raw = fits.getdata(path).astype(np.float64)
    ccd = CCDData.read(path, unit="adu")
    for method in ("median", "mean"):
        ours = trim(subtract_overscan(raw, info.biassec, method=method), info.trimsec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = ccdproc.trim_image(
                ccdproc.subtract_overscan(
                    ccd, fits_section="[4:13,1:520]", median=method == "median"
                ),
                fits_section="[17:528,1:520]",
            )
        assert ours.shape == (520, 512)
        assert_close(ours, ref.data)
        # The overscan strip itself is now at zero: the ~212 ADU pedestal is gone.
        strip = subtract_overscan(raw, info.biassec, method=method)[info.biassec.slices]
        assert abs(np.median(strip)) <= 1.0 < np.median(raw[info.biassec.slices])


@pytest.mark.filterwarnings("ignore::astropy.wcs.FITSFixedWarning")
def test_real_feder_biases_combine_equals_ccdproc():
    paths = sorted(REAL.glob("biastest*.fit"))
    stack = np.stack([fits.getdata(p).astype(np.float64) for p in paths])
    ccds = [CCDData.read(p, unit="adu") for p in paths]
    for method in ("median", "average"):
        ref = ccdproc.combine(ccds, method=method)
        value, err, _ = combine_stack(stack, CombineConfig(method=method))
        assert_close(value, ref.data)
        assert_close(err, ref.uncertainty.array)


@pytest.mark.parametrize("cenfunc", ["median", "mean"])
@pytest.mark.parametrize("method", ["median", "average"])
def test_sigma_clipped_combine_equals_ccdproc(method, cenfunc):
    rng = np.random.default_rng(11)
    stack = rng.normal(1000, 5, (11, 40, 50))
    hits = rng.random(stack.shape) < 0.01  # outliers both ways
    stack[hits] += rng.choice([-400.0, 800.0], hits.sum())
    ccds = [CCDData(a, unit="adu") for a in stack]
    ref = ccdproc.combine(
        ccds,
        method=method,
        sigma_clip=True,
        sigma_clip_low_thresh=2.5,
        sigma_clip_high_thresh=3.0,
        sigma_clip_func=np.ma.median if cenfunc == "median" else np.ma.mean,
        sigma_clip_dev_func=np.ma.std,
    )
    cfg = CombineConfig(method, ClipConfig(enabled=True, low=2.5, high=3.0, cenfunc=cenfunc))
    value, err, count = combine_stack(stack, cfg)
    assert_close(value, ref.data)
    assert_close(err, ref.uncertainty.array)
    assert count.min() < 11  # something was clipped


@pytest.mark.parametrize("cenfunc", ["median", "mean"])
@pytest.mark.parametrize("maxiters", [2, 5])
def test_iterative_clipping_matches_astropy_sigma_clip(maxiters, cenfunc):
    from astropy.stats import sigma_clip

    rng = np.random.default_rng(5)
    stack = rng.normal(0, 1, (15, 30, 30))
    stack[rng.random(stack.shape) < 0.05] += 6
    clipped = sigma_clip(
        stack,
        sigma_lower=2,
        sigma_upper=2,
        axis=0,
        maxiters=maxiters,
        cenfunc=cenfunc,
        stdfunc="std",
        masked=True,
    )
    clip = ClipConfig(enabled=True, low=2, high=2, cenfunc=cenfunc, maxiters=maxiters)
    for method in ("average", "median"):
        value, err, count = combine_stack(stack, CombineConfig(method, clip))
        np.testing.assert_array_equal(count, (~clipped.mask).sum(axis=0))
        kept = count.astype(np.float64)
        if method == "average":
            assert_close(value, clipped.mean(axis=0).data)
            assert_close(err, clipped.std(axis=0).data / np.sqrt(kept))
        else:
            assert_close(value, np.ma.median(clipped, axis=0).data)


def test_tiled_combine_equals_whole_stack():
    rng = np.random.default_rng(2)
    stack = rng.normal(100, 3, (7, 53, 31))
    cfg = CombineConfig("average", ClipConfig(enabled=True))
    whole = combine_stack(stack, cfg)
    loaders = [lambda r0, r1, a=a: a[r0:r1] for a in stack]
    for rows in (1, 8, 53):
        tiled = combine_tiled(loaders, (53, 31), cfg, tile_rows=rows)
        np.testing.assert_array_equal(tiled[0], whole[0].astype(np.float32))
        np.testing.assert_array_equal(tiled[2], whole[2])
