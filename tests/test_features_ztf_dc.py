"""ZTF alert light curves: DC magnitudes from the reference source, and duplicate exposures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from astropipe.lightcurve import FLAG_DC_MAGNITUDE, FLAG_NEGATIVE_DIFF, to_lightcurve_table
from astropipe.ztf.alerts import decode_packet
from astropipe.ztf.collector import AlertCollector
from astropipe.ztf.config import AlertsConfig, ZtfConfig
from astropipe.ztf.dcmag import apply_dc_magnitudes, dc_magnitude
from astropipe.ztf.packets import Packet
from astropipe.ztf.stage import _alert_lightcurves

ALERTS = Path(__file__).resolve().parents[1] / "data" / "sample" / "ztf" / "alerts"
GOOD = sorted(p for p in ALERTS.glob("*.avro") if "schemaless" not in p.name)


def _broker(magpsf: float, sigmapsf: float, magnr: float, sigmagnr: float, sign: int):
    """The broker formula written out with math (the reference for the vectorised one)."""
    f_ref = 10 ** (-0.4 * magnr)
    f_diff = 10 ** (-0.4 * magpsf)
    f_dc = f_ref + sign * f_diff
    mag = -2.5 * math.log10(f_dc)
    err = math.sqrt((f_diff * sigmapsf) ** 2 + (f_ref * sigmagnr) ** 2) / f_dc
    return mag, err


@pytest.mark.parametrize("negative", [False, True])
def test_dc_magnitude_is_the_broker_formula(negative: bool) -> None:
    mag, err = dc_magnitude(
        np.array([17.0]), np.array([0.05]), np.array([15.0]), np.array([0.02]), np.array([negative])
    )
    want_mag, want_err = _broker(17.0, 0.05, 15.0, 0.02, -1 if negative else 1)
    assert abs(mag[0] - want_mag) <= 5e-7 and abs(err[0] - want_err) <= 5e-7
    # 17 mag on a 15 mag star: ~0.16 mag brighter (positive) or fainter (negative)
    assert (mag[0] > 15.0) == negative and abs(mag[0] - 15.0) == pytest.approx(0.17, abs=0.03)
    # stored on the 1e-6 mag grid
    assert mag[0] * 1e6 == pytest.approx(round(mag[0] * 1e6), abs=1e-6)


def test_no_dc_magnitude_when_the_difference_exceeds_the_reference() -> None:
    # a negative difference brighter than the reference: f_dc < 0, no magnitude
    mag, err = dc_magnitude(
        np.array([15.0]), np.array([0.05]), np.array([16.0]), np.array([0.02]), np.array([True])
    )
    assert np.isnan(mag[0]) and np.isnan(err[0])
    lc = pd.DataFrame(
        {
            "mag": [15.0, 17.0, 17.0],
            "mag_err": [0.05, 0.05, 0.05],
            "magnr": [16.0, 15.0, 15.0],
            "sigmagnr": [0.02, 0.02, 0.02],
            "distnr": [0.3, 0.3, 5.0],  # the third is far from the reference source
            "is_upper_limit": False,
            "flags": [FLAG_NEGATIVE_DIFF] * 3,
        }
    )
    out = apply_dc_magnitudes(lc, max_distnr=1.4)
    assert list(out["flags"]) == [FLAG_NEGATIVE_DIFF, FLAG_DC_MAGNITUDE, FLAG_NEGATIVE_DIFF]
    assert out["mag"][0] == 15.0 and out["mag"][2] == 17.0 and out["mag"][1] > 15.0


def _sample_lightcurves(dc: bool) -> pd.DataFrame:
    collector = AlertCollector()
    for path in GOOD:
        collector.add(decode_packet(Packet(path.name, path.read_bytes())))
    cfg = ZtfConfig(alerts=AlertsConfig(dc_magnitudes=dc))
    return to_lightcurve_table(_alert_lightcurves(collector, cfg)).to_pandas()


def test_negative_difference_epochs_of_variable_stars_are_kept_with_dc() -> None:
    # The numbers: without DC, ZTF17aaajnnn loses 43 of 63 detections to bit 32 and
    # ZTF19aainpua all 30.
    usable = {}
    for dc in (False, True):
        lc = _sample_lightcurves(dc)
        det = lc[~lc.is_upper_limit]
        ok = det[(det["flags"] & FLAG_NEGATIVE_DIFF) == 0]
        usable[dc] = ok.groupby("object_id").size()
        total = det.groupby("object_id").size()
    assert total["ZTF17aaajnnn"] == 63 and usable[False]["ZTF17aaajnnn"] == 20
    assert total["ZTF19aainpua"] == 30 and "ZTF19aainpua" not in usable[False]
    assert usable[True]["ZTF17aaajnnn"] == 63 and usable[True]["ZTF19aainpua"] == 30
    lc = _sample_lightcurves(True)
    star = lc[(lc.object_id == "ZTF17aaajnnn") & ~lc.is_upper_limit]
    assert ((star["flags"] & FLAG_DC_MAGNITUDE) != 0).all()
    assert np.isfinite(star["mag"]).all() and (star["mag_err"] > 0).all()
    # DC magnitudes of one star scatter around its reference magnitude, not 2-3 mag below it
    assert star["mag"].std() < 1.0


def test_two_candids_of_one_exposure_keep_the_smaller_error_not_the_brighter() -> None:
    # Regression: deduplicate() sorted on mag and kept the brighter of two detections of the
    # same (object, band, mjd); the better measurement is the one with the smaller error.
    rows = pd.DataFrame(
        {
            "object_id": "ZTF18aaaaaaa",
            "survey": "ZTF",
            "source": "alert",
            "band": "zr",
            "mjd": [59000.25, 59000.25],
            "mag": [17.10, 17.60],  # brighter, but noisier
            "mag_err": [0.30, 0.04],
        }
    )
    for order in (rows, rows.iloc[::-1]):
        lc = to_lightcurve_table(order).to_pandas()
        assert len(lc) == 1
        assert lc["mag"].iloc[0] == 17.60 and lc["mag_err"].iloc[0] == 0.04
