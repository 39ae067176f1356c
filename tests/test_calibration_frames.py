"""Frame classification from headers, FITS sections, detector parameters, grouping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from astropipe.calibration.config import CalibrationConfig, DetectorConfig
from astropipe.calibration.frames import classify, discover, read_info
from astropipe.calibration.masters import detector_for
from astropipe.calibration.sections import parse_section
from astropipe.errors import ConfigError, InputFileError, MissingInputError

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "data/sample/ccd/real"
NIGHT = ROOT / "data/sample/ccd/night"


@pytest.mark.parametrize(
    ("keyword", "value", "kind"),
    [
        ("IMAGETYP", "BIAS", "bias"),
        ("IMAGETYP", "Bias Frame", "bias"),
        ("OBSTYPE", "zero", "bias"),
        ("IMAGETYP", "DARK", "dark"),
        ("IMAGETYP", "Dark Frame", "dark"),
        ("IMAGETYP", "FLAT", "flat"),
        ("IMAGETYP", "Flat Field", "flat"),
        ("IMAGETYP", "LIGHT", "science"),
        ("IMAGETYP", "Light Frame", "science"),
        ("OBSTYPE", "object", "science"),
        ("IMAGETYP", "  light   frame ", "science"),
        ("IMAGETYP", "focus", None),
        ("FOO", "BIAS", None),
    ],
)
def test_classify_spellings(keyword, value, kind):
    assert classify(fits.Header([(keyword, value)])) == kind


@pytest.mark.parametrize(
    ("name", "kind", "instrument", "filt"),
    [
        ("saao_1.0m_a8280271.fits", "science", "STE3 CCD", None),
        ("biastest1.fit", "bias", "Apogee Alta", None),
        ("aspen_trimmed_flat_R.fit", "flat", "Apogee Aspen CG16M", "R"),
        ("maximdl_6_18_light_kelt-16-b.fit", "science", "AspenCG16", "r"),
        ("maximdl_5_23_light_ngc-6946.fit", "science", "Apogee USB/Net", "B"),
    ],
)
def test_real_frames_classified(name, kind, instrument, filt):
    info = read_info(REAL / name)
    assert (info.kind, info.instrument, info.filter, info.binning) == (
        kind,
        instrument,
        filt,
        (1, 1),
    )


def test_real_directory_discovery_is_sorted_and_complete():
    frames, skipped = discover(REAL)
    assert [f.name for f in frames] == sorted(f.name for f in frames)
    assert len(frames) == 7 and skipped == []


def test_simulated_night_spellings_cover_every_kind():
    frames, _ = discover(NIGHT)
    spellings = {f.header.get("IMAGETYP", f.header.get("OBSTYPE")) for f in frames}
    assert {
        "BIAS",
        "Bias Frame",
        "zero",
        "DARK",
        "Dark Frame",
        "FLAT",
        "Flat Field",
        "LIGHT",
        "Light Frame",
        "object",
    } <= spellings


@pytest.mark.parametrize(
    ("text", "shape", "slices"),
    [
        ("[4:13,1:520]", (520, 536), (slice(0, 520), slice(3, 13))),
        ("[17:528,1:520]", (520, 536), (slice(0, 520), slice(16, 528))),
        ("[ 13:4 , * ]", (10, 20), (slice(0, 10), slice(3, 13))),
    ],
)
def test_parse_section_fits_to_numpy(text, shape, slices):
    assert parse_section(text, shape).slices == slices


@pytest.mark.parametrize("text", ["4:13,1:520", "[0:13,1:520]", "[1:537,1:520]", "[a:b,1:2]"])
def test_parse_section_rejects_bad_sections(text):
    with pytest.raises(InputFileError):
        parse_section(text, (520, 536), where="x.fits: BIASSEC")


def test_section_round_trip():
    sec = parse_section("[17:528,1:520]", (520, 536))
    assert sec.fits() == "[17:528,1:520]" and sec.shape == (520, 512)


def test_detector_from_header_or_config():
    info = read_info(REAL / "saao_1.0m_a8280271.fits")
    det = detector_for(info, DetectorConfig())
    assert (det.gain, det.read_noise, det.saturation) == (1.9, 5.0, 65535.0)
    assert detector_for(info, DetectorConfig(gain=2.5)).gain == 2.5
    light = read_info(REAL / "maximdl_5_23_light_ngc-6946.fit")
    with pytest.raises(ConfigError, match="calibration.detector.read_noise"):
        detector_for(light, DetectorConfig(gain=1.0))


def test_not_fits_is_a_clear_error(tmp_path):
    bad = tmp_path / "page.fits"
    bad.write_text("<html>502 Bad Gateway</html>")
    with pytest.raises(InputFileError, match="not a readable FITS file"):
        read_info(bad)


def test_missing_or_empty_directory(tmp_path):
    with pytest.raises(MissingInputError, match="not found"):
        discover(tmp_path / "nope")
    with pytest.raises(MissingInputError, match="no FITS frames"):
        discover(tmp_path)


def test_unknown_frame_types_are_skipped(tmp_path):
    fits.PrimaryHDU(
        np.zeros((4, 4), np.float32), header=fits.Header([("IMAGETYP", "focus")])
    ).writeto(tmp_path / "focus.fits")
    frames, skipped = discover(tmp_path)
    assert frames == [] and [p.name for p in skipped] == ["focus.fits"]


@pytest.mark.parametrize(
    ("section", "value", "match"),
    [
        ("bias", {"method": "mode"}, "not a valid option"),
        ("overscan", {"method": "fit"}, "not a valid option"),
        ("flat", {"bad_low": 1.2}, "bad_low"),
    ],
)
def test_config_choices_are_checked(section, value, match):
    with pytest.raises(ConfigError, match=match):
        CalibrationConfig.from_params({"calibration": {section: value}})


def test_default_conf_matches_the_schema():
    import yaml

    conf = yaml.safe_load((ROOT / "conf/calibration/default.yaml").read_text())
    assert CalibrationConfig.from_params({"calibration": conf}) == CalibrationConfig()


def test_open_fits_on_two_threads_leaves_the_warning_filters_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review 1.3 (io/fits.py): open_fits silences astropy's truncation warning with
    ``warnings.catch_warnings``, which swaps process-global state. Two frames opened on two
    threads, the first to enter leaving first, restored each other's filters out of order and
    left "ignore AstropyUserWarning" installed for the whole process."""
    import threading
    import time
    import warnings

    from astropipe.io import fits as fitsio

    real_open = fitsio.fits.open
    b_in, a_out = threading.Event(), threading.Event()

    def open_(path, **kw):
        if Path(path).name == "a.fits":
            b_in.wait(0.5)  # times out once the opens are serialised
            hdul = real_open(path, **kw)
            a_out.set()
            return hdul
        b_in.set()
        a_out.wait(5)
        time.sleep(0.05)  # A leaves its catch_warnings first
        return real_open(path, **kw)

    monkeypatch.setattr(fitsio.fits, "open", open_)
    for name in ("a.fits", "b.fits"):
        fits.PrimaryHDU(np.zeros((4, 4), np.float32)).writeto(tmp_path / name)

    def read(name: str) -> None:
        with fitsio.open_fits(tmp_path / name, memmap=False):
            pass

    with warnings.catch_warnings():
        before = list(warnings.filters)
        a = threading.Thread(target=read, args=("a.fits",))
        a.start()
        time.sleep(0.05)  # A is inside open_fits first
        b = threading.Thread(target=read, args=("b.fits",))
        b.start()
        a.join(10)
        b.join(10)
        assert warnings.filters == before
