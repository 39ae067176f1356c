"""The cleaning steps give the same bytes under every numpy SIMD level of this CPU.

Each level runs in its own interpreter (``NPY_DISABLE_CPU_FEATURES`` is read at import time)
and hashes what the steps return on a real TESS light curve: the Savitzky–Golay flatten and
trend, the biweight trend, the wavelet-denoised flux, every outlier mask — including the
isolation forest's, whose scores use ``log`` — and the normalisations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_simd_levels import simd_levels

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import hashlib, json, sys, warnings
import numpy as np
from astropipe.tess import read_lightcurve_fits
from astropipe.features.clean import (
    biweight_trend, flatten, iqr_mask, isolation_forest_mask, mad_mask, modified_z_mask,
    normalise, sigma_clip_mask, wavelet_denoise,
)
warnings.simplefilter("ignore")
t = read_lightcurve_fits(sys.argv[1])
t = t.to_pandas() if hasattr(t, "to_pandas") else t
ok = np.isfinite(t["flux"].to_numpy(float))
time, flux = t["mjd"].to_numpy(float)[ok], t["flux"].to_numpy(float)[ok]
h = {}
def put(name, a):
    h[name] = hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
r = flatten(time, flux, window_length=101)
put("flat", r.flat); put("trend", r.trend); put("used", r.used)
put("biweight", biweight_trend(time[:4000], flux[:4000], window_days=0.5))
put("wavelet", wavelet_denoise(flux, wavelet="db4", levels=4))
resid = flux - r.trend
put("sigma", sigma_clip_mask(resid, sigma=3.0, clip="both"))
put("mad", mad_mask(resid, threshold=4.0)); put("iqr", iqr_mask(resid, factor=1.5))
put("modz", modified_z_mask(resid, threshold=3.5))
put("forest", isolation_forest_mask(resid, contamination=0.01, seed=0))
for m in ("median", "mean", "robust", "unity", "minmax", "zscore", "quantile"):
    put("norm_" + m, normalise(r.flat, method=m)[0])
print(json.dumps(h))
"""

SAMPLE = ROOT / "data/sample/tess/hlsp_tess-data-alerts_tess_phot_00025155310-s01_tess_v1_lc.fits"


def _hashes(disabled: str) -> dict[str, str]:
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": disabled, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(SAMPLE)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_cleaning_bytes_same_at_every_simd_level() -> None:
    levels = simd_levels()
    ref = _hashes(levels[0][1])
    assert len(ref) == 17
    for name, disabled in levels[1:]:
        got = _hashes(disabled)
        diff = sorted(k for k in ref if got[k] != ref[k])
        assert not diff, f"SIMD level {name}: {diff} differ"
