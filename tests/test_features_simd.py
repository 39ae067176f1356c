"""Feature bytes do not depend on numpy's SIMD level: Lomb-Scargle, CDPP and DC magnitudes.

The periodogram (sin/cos, and exp/log in its false-alarm probability) and the DC magnitudes
(pow, log10) are stored at a stated precision (30 significand bits; 1e-6 mag); everything else
is + - * / sqrt in a fixed order. This runs the feature code directly in one subprocess per
SIMD level (as tests/test_simd_levels.py does for the whole pipeline, but in seconds and with
DC magnitudes switched on) and requires the same hash everywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_simd_levels import simd_levels

pytestmark = pytest.mark.slow

SCRIPT = r"""
import hashlib
import numpy as np
import pandas as pd
from astropipe.features import compute_features
from astropipe.ztf.dcmag import dc_magnitude

rng = np.random.default_rng(11)
parts = []
for o in range(40):
    n = int(rng.integers(30, 400))
    kind = "flux" if o % 2 else "mag"
    t = np.sort(rng.uniform(58000, 58000 + (27 if kind == "flux" else 900), n))
    period = rng.uniform(0.2, 20)
    base = 1000.0 if kind == "flux" else 18.0
    amp = 30.0 if kind == "flux" else 0.3
    v = base + amp * np.sin(2 * np.pi * t / period) + rng.normal(0, amp / 5, n)
    parts.append(pd.DataFrame({"object_id": f"o{o:02d}", "band": "b", "survey": "s", "mjd": t,
                               "value": v, "err": amp / 5, "kind": kind}))
feats = compute_features(pd.concat(parts, ignore_index=True))
h = hashlib.sha256()
for col in feats.columns[2:]:
    h.update(np.ascontiguousarray(feats[col].to_numpy(np.float64)).tobytes())
n = 20000
mag, err = dc_magnitude(rng.uniform(15, 21, n), rng.uniform(0.01, 0.2, n),
                        rng.uniform(13, 19, n), rng.uniform(0.01, 0.05, n), rng.random(n) < 0.5)
h.update(mag.tobytes()); h.update(err.tobytes())
print(h.hexdigest(), int(np.isfinite(feats["ls_fap"]).sum()), int(np.isfinite(feats["cdpp"]).sum()))
"""


def _run(disabled: str) -> str:
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": disabled}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_feature_bytes_equal_at_every_simd_level() -> None:
    levels = simd_levels()
    results = {name: _run(disabled) for name, disabled in levels}
    first = results[levels[0][0]]
    digest, n_ls, n_cdpp = first.split()
    assert int(n_ls) == 40 and int(n_cdpp) == 20  # the values under test exist
    assert all(r == first for r in results.values()), results
