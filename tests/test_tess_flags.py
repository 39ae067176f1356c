"""The flags layout: survey bits 0-31 untouched, astropipe's bits from 32 (issue 8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from astropipe.config import compose
from astropipe.features.stage import FeaturesConfig
from astropipe.lightcurve import (
    ASTROPIPE_FLAGS_MASK,
    FLAG_NEGATIVE_DIFF,
    FLAG_QUALITY_MASKED,
    SURVEY_FLAGS_MASK,
    to_lightcurve_table,
)
from astropipe.tess import KEPLER_QUALITY, TESS_QUALITY, read_lightcurve_fits
from astropipe.tess.columns import ELEANOR
from astropipe.ztf.alerts import decode_packet
from astropipe.ztf.collector import AlertCollector
from astropipe.ztf.packets import Packet
from astropipe.ztf.stage import _alert_lightcurves

ROOT = Path(__file__).resolve().parents[1]


def test_astropipe_bits_sit_above_every_survey_bit() -> None:
    survey_max = max(
        max(TESS_QUALITY.bits), max(KEPLER_QUALITY.bits), ELEANOR.extra_quality_bits, 1 << 15
    )
    assert survey_max == 1 << 20  # Kepler's ThrusterFiring
    assert survey_max & ASTROPIPE_FLAGS_MASK == 0 and survey_max <= SURVEY_FLAGS_MASK
    assert FLAG_NEGATIVE_DIFF == 1 << 32 and FLAG_QUALITY_MASKED == 1 << 33
    assert FLAG_NEGATIVE_DIFF & SURVEY_FLAGS_MASK == 0
    assert FLAG_QUALITY_MASKED & SURVEY_FLAGS_MASK == 0
    assert ASTROPIPE_FLAGS_MASK | SURVEY_FLAGS_MASK == (1 << 63) - 1  # int64 stays non-negative


def test_ztf_negative_difference_rows_keep_their_meaning_at_bit_32() -> None:
    collector = AlertCollector()
    for path in sorted((ROOT / "data/sample/ztf/alerts").glob("*.avro")):
        if "schemaless" not in path.name:
            collector.add(decode_packet(Packet(path.name, path.read_bytes())))
    lc = to_lightcurve_table(_alert_lightcurves(collector)).to_pandas()
    flags = lc["flags"].to_numpy()
    assert set(np.unique(flags)) == {0, FLAG_NEGATIVE_DIFF}
    assert int((flags == FLAG_NEGATIVE_DIFF).sum()) == 124  # isdiffpos 'f' / '0' epochs


def test_features_default_excludes_negative_difference_and_masked_quality() -> None:
    expected = FLAG_NEGATIVE_DIFF | FLAG_QUALITY_MASKED
    assert FeaturesConfig().exclude_flags == expected
    assert FeaturesConfig.from_params(compose()).exclude_flags == expected


def test_kepler_bit_20_survives_in_flags(tmp_path: Path) -> None:
    from astropy.io import fits

    src = ROOT / "data/sample/kepler/dip_llc.fits"
    with fits.open(src) as hdul:
        hdul[1].data["SAP_QUALITY"][:3] = [1 << 20, (1 << 20) | 1, 1 << 19]
        hdul.writeto(tmp_path / "k.fits")
    t = read_lightcurve_fits(tmp_path / "k.fits").to_pandas()
    assert t["flags"][:3].tolist() == [
        (1 << 20) | FLAG_QUALITY_MASKED,  # ThrusterFiring is in the default preset
        (1 << 20) | 1 | FLAG_QUALITY_MASKED,
        1 << 19,  # PossibleThrusterFiring is not
    ]
    assert (t["flags"] & SURVEY_FLAGS_MASK).tolist() == t["quality"].tolist()
