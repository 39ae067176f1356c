"""Our reader against lightkurve.read on every sample file, every preset, both flux choices."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from astropipe.lightcurve import FLAG_QUALITY_MASKED
from astropipe.tess import PRESETS, TessReadConfig, read_lightcurve_fits

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # lightkurve warns about optional extras on import
    import lightkurve as lk

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted(
    [*(ROOT / "data/sample/tess").glob("*.fits"), *(ROOT / "data/sample/kepler").glob("*.fits")]
)


def _lightkurve(path: Path, quality, flux: str):
    eleanor = "eleanor" in path.name
    column = {("pdcsap", False): "pdcsap_flux", ("sap", False): "sap_flux",
              ("pdcsap", True): "CORR_FLUX", ("sap", True): "RAW_FLUX"}[flux, eleanor]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lk.read(str(path), quality_bitmask=quality, flux_column=column)


def _kept(path: Path, quality, flux: str):
    t = read_lightcurve_fits(path, TessReadConfig(quality=quality, flux_column=flux)).to_pandas()
    return t[(t["flags"] & FLAG_QUALITY_MASKED) == 0]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("quality", [*PRESETS, 1 | 4 | 128 | 2048])
def test_pdcsap_equals_lightkurve(path: Path, quality) -> None:
    ref = _lightkurve(path, quality, "pdcsap")
    ours = _kept(path, quality, "pdcsap")
    assert len(ours) == len(ref) > 0
    np.testing.assert_array_equal(ours["flux"], np.asarray(ref.flux.value, dtype=float))
    np.testing.assert_array_equal(ours["flux_err"], np.asarray(ref.flux_err.value, dtype=float))
    np.testing.assert_array_equal(ours["quality"], np.asarray(ref.quality.value))
    assert np.max(np.abs(ours["mjd"].to_numpy() - ref.time.tdb.mjd)) * 86400 < 1e-6


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_sap_equals_lightkurve(path: Path) -> None:
    ref = _lightkurve(path, "default", "sap")
    ours = _kept(path, "default", "sap")
    np.testing.assert_array_equal(ours["flux"], np.asarray(ref.flux.value, dtype=float))
    np.testing.assert_array_equal(ours["flux_err"], np.asarray(ref.flux_err.value, dtype=float))
    assert np.max(np.abs(ours["mjd"].to_numpy() - ref.time.tdb.mjd)) * 86400 < 1e-6
