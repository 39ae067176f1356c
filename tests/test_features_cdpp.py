"""CDPP equals lightkurve's estimate_cdpp on the same (float64) light curve."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from astropipe.errors import ConfigError
from astropipe.features import compute_features
from astropipe.features.cdpp import CdppConfig, cdpp_ppm

lk = pytest.importorskip("lightkurve")
ROOT = Path(__file__).resolve().parents[1]
SAMPLES = [
    "data/sample/kepler/kplr011442793-2009350155506_llc.fits",
    "data/sample/kepler/kplr010666592-2009131110544_slc.fits",
    "data/sample/kepler/ktwo211495446-c05_llc.fits",
    "data/sample/kepler/dip_llc.fits",
]


def _read(path: str) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lc = lk.read(ROOT / path).remove_nans()
    # the light-curve table holds float64 (a float32 SPOC flux converts exactly)
    return lc.time.value, np.asarray(lc.flux.value, dtype=np.float64)


@pytest.mark.parametrize("path", SAMPLES)
def test_equals_lightkurve_on_sample_light_curves(path: str) -> None:
    t, f = _read(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = lk.LightCurve(time=t, flux=f).estimate_cdpp().value
    pts = pd.DataFrame(
        {
            "object_id": path,
            "band": "Kepler",
            "survey": "kepler",
            "mjd": t,
            "value": f,
            "err": np.nan,
            "kind": "flux",
        }
    )
    got = compute_features(pts).iloc[0]["cdpp"]
    assert got == pytest.approx(want, rel=1e-6)


def test_white_noise_has_the_expected_cdpp() -> None:
    # sigma = 1000 ppm white noise averaged over 13 cadences: 1000 / sqrt(13) = 277 ppm before
    # flattening; the 101-cadence Savitzky-Golay trend absorbs part of the 13-cadence noise.
    rng = np.random.default_rng(0)
    t = np.arange(20000) / 48.0
    f = 1.0 + rng.normal(0, 1e-3, len(t))
    got = cdpp_ppm(t, f, cfg=CdppConfig())
    assert 0.75 * 1000 / np.sqrt(13) < got < 1000 / np.sqrt(13)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = lk.LightCurve(time=t, flux=f).estimate_cdpp().value
    assert got == pytest.approx(want, rel=1e-6)


def test_magnitudes_get_nan_and_even_window_is_refused() -> None:
    pts = pd.DataFrame(
        {
            "object_id": "M",
            "band": "zg",
            "survey": "ztf",
            "mjd": np.arange(20.0),
            "value": 18.0 + np.arange(20.0) % 3,
            "err": 0.1,
            "kind": "mag",
        }
    )
    assert np.isnan(compute_features(pts).iloc[0]["cdpp"])
    from astropipe.features.stage import FeaturesConfig

    params = {"features": {"extract": {"cdpp": {"savgol_window": 100}}}}
    with pytest.raises(ConfigError, match=r"features\.extract\.cdpp.*odd savgol_window.*100"):
        FeaturesConfig.from_params(params)
    params = {"features": {"extract": {"periodogram": {"min_period": 200.0}}}}
    with pytest.raises(ConfigError, match=r"periodogram.*min_period < max_period"):
        FeaturesConfig.from_params(params)
