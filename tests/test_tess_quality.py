"""Quality presets: bit for bit lightkurve's, custom bitmasks, honest errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from astropipe.errors import ConfigError
from astropipe.tess import KEPLER_QUALITY, PRESETS, TESS_QUALITY, TessReadConfig, quality_bitmask
from astropipe.tess.columns import ELEANOR
from astropipe.tess.quality import decode_quality, quality_mask

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # lightkurve warns about optional extras on import
    from lightkurve.utils import KeplerQualityFlags, TessQualityFlags


@pytest.mark.parametrize(
    ("family", "oracle"), [("tess", TessQualityFlags), ("kepler", KeplerQualityFlags)]
)
def test_presets_equal_lightkurve_bitmasks(family: str, oracle: type) -> None:
    assert quality_bitmask(family, "none") == 0
    assert quality_bitmask(family, "default") == oracle.DEFAULT_BITMASK
    assert quality_bitmask(family, "hard") == oracle.HARD_BITMASK
    assert quality_bitmask(family, "hardest") == oracle.HARDEST_BITMASK
    for name in PRESETS:
        assert quality_bitmask(family, name) == oracle.OPTIONS[name]


def test_preset_values_pinned() -> None:
    # The numbers themselves, so a change in lightkurve cannot move ours silently.
    assert [quality_bitmask("tess", p) for p in PRESETS] == [0, 17087, 24319, 65535]
    assert [quality_bitmask("kepler", p) for p in PRESETS] == [0, 1130799, 1664431, 2096639]


@pytest.mark.parametrize(
    ("flags", "oracle"), [(TESS_QUALITY, TessQualityFlags), (KEPLER_QUALITY, KeplerQualityFlags)]
)
def test_named_bits_equal_lightkurve(flags, oracle) -> None:
    assert sorted(flags.bits) == sorted(oracle.STRINGS)
    for value, (name, _) in flags.bits.items():
        assert getattr(oracle, name) == value


def test_eleanor_extra_bits_join_hardest_only() -> None:
    extra = ELEANOR.extra_quality_bits
    assert extra == 131072 | 262144
    assert quality_bitmask("tess", "hardest", extra_bits=extra) == 65535 | 131072 | 262144
    assert quality_bitmask("tess", "hard", extra_bits=extra) == TessQualityFlags.HARD_BITMASK


def test_custom_integer_bitmask_is_used_as_is() -> None:
    assert quality_bitmask("kepler", 1 << 20) == 1 << 20
    q = np.array([0, 1, 2, 1 << 20, (1 << 20) | 4])
    assert quality_mask(q, (1 << 20) | 1).tolist() == [False, True, False, True, True]
    assert TessReadConfig(quality=96).quality == 96


def test_decode_names_bits() -> None:
    assert decode_quality(1 | 32 | (1 << 20), "kepler") == [
        "AttitudeTweak",
        "Desat",
        "ThrusterFiring",
    ]
    assert decode_quality(512, "kepler") == ["bit9"]  # unassigned in the Kepler Archive Manual


@pytest.mark.parametrize("bad", ["strict", "Default", True, -1, 1.5, 1 << 32])
def test_unknown_quality_setting_lists_the_choices(bad) -> None:
    with pytest.raises(ConfigError) as err:
        TessReadConfig(quality=bad)
    text = str(err.value)
    assert "tess.quality" in text
    if isinstance(bad, str):
        assert "'none', 'default', 'hard', 'hardest'" in text


def test_quality_bitmask_errors() -> None:
    with pytest.raises(ConfigError, match="family 'jwst'"):
        quality_bitmask("jwst", "default")
    with pytest.raises(ConfigError, match="'none', 'default', 'hard', 'hardest'"):
        quality_bitmask("tess", "soft")
    with pytest.raises(ConfigError, match="negative"):
        quality_bitmask("tess", -4)
