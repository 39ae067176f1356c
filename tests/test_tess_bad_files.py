"""Bad light-curve files: one InputFileError naming the file and the reason, never another error."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from astropipe.errors import AstropipeError, InputFileError
from astropipe.tess import TESS_LIGHTCURVE_SCHEMA, read_lightcurve_fits

ROOT = Path(__file__).resolve().parents[1]
BAD = ROOT / "data/sample/tess/bad"
PIMEN = ROOT / "data/sample/tess/test-lc-tess-pimen-100-cadences.fits"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        # truncated inside the table data: headers parse, 10000 bytes promised, 2388 present
        (
            "test-lc-tess-pimen-corrupted.fits",
            "truncated: the LIGHTCURVE extension needs 10000 bytes of data from byte 20160, "
            "but the file ends at byte 22548",
        ),
        # truncated inside the LIGHTCURVE header (astropy would silently drop HDU 1)
        (
            "test-lc-tess-pimen-corrupted-at-header.fits",
            "truncated or damaged: the header of HDU 1 stops after 240 bytes without an END card",
        ),
        # truncated inside the primary header
        (
            "test-lc-tess-pimen-corrupted-at-header2.fits",
            "truncated or damaged: the header of HDU 0 stops after 600 bytes without an END card",
        ),
    ],
)
def test_truncated_sample_files(name: str, reason: str) -> None:
    path = BAD / name
    with pytest.raises(InputFileError) as err:
        read_lightcurve_fits(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and reason in text and "\n" not in text
    assert "re-download" in text


def test_unknown_layout_lists_what_each_map_lacks(tmp_path: Path) -> None:
    cols = [fits.Column("MJD", "D", array=np.arange(3.0)), fits.Column("MAG", "E", array=[1, 2, 3])]
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="LIGHTCURVE")])
    hdul[0].header["TELESCOP"] = "TESS"
    hdul.writeto(tmp_path / "other.fits")
    with pytest.raises(InputFileError) as err:
        read_lightcurve_fits(tmp_path / "other.fits")
    text = str(err.value)
    assert (
        "unknown light-curve layout (spoc: lacks columns ['TIME', 'QUALITY', 'CADENCENO', " in text
    )
    assert "kepler: TELESCOP='TESS'" in text and "eleanor: lacks columns" in text
    assert text.endswith("add a column map for it to tess.read.layouts in conf/tess.")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", r"not a FITS file \(it does not start with a SIMPLE card, 0 bytes\)"),
        (b"<html><body>502 Bad Gateway</body></html>", "not a FITS file"),
        (b"SIMPLE  =                    T" + b" " * 2850, "stops after 2880 bytes without an END"),
        (fits.PrimaryHDU().header.tostring().encode(), "no table extension after the primary"),
    ],
)
def test_not_fits(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "x.fits"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=reason):
        read_lightcurve_fits(path)


def test_image_instead_of_table(tmp_path: Path) -> None:
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((3, 3)))]).writeto(tmp_path / "i.fits")
    with pytest.raises(InputFileError, match="no table extension 1"):
        read_lightcurve_fits(tmp_path / "i.fits")


def _mutants(src: bytes, n: int, seed: int):
    """Seeded bit flips (mostly in the headers, where they hurt) and truncations."""
    rng = random.Random(seed)
    header_end = 20160  # primary + LIGHTCURVE headers of the 100-cadence pi Men file
    for i in range(n):
        b = bytearray(src)
        kind = rng.choice(("flip", "flip3", "flip-data", "truncate"))
        if kind == "truncate":
            b = b[: rng.randrange(len(b))]
        else:
            span = len(b) if kind == "flip-data" else header_end
            for _ in range(3 if kind == "flip3" else 1):
                b[rng.randrange(span)] ^= 1 << rng.randrange(8)
        yield i, kind, bytes(b)


def test_mutation_fuzz_only_astropipe_errors(tmp_path: Path) -> None:
    src = PIMEN.read_bytes()
    outcomes = {"read": 0, "refused": 0}
    for i, kind, data in _mutants(src, 120, seed=20240508):
        path = tmp_path / f"m{i}.fits"
        path.write_bytes(data)
        try:
            t = read_lightcurve_fits(path)
        except AstropipeError as exc:
            text = str(exc)
            assert text.startswith(str(path)) and "\n" not in text, (kind, text)
            outcomes["refused"] += 1
        except Exception as exc:  # noqa: BLE001 - the point is that nothing else escapes
            pytest.fail(f"mutant {i} ({kind}) raised {type(exc).__name__}: {exc}")
        else:
            assert t.schema.remove_metadata() == TESS_LIGHTCURVE_SCHEMA
            outcomes["read"] += 1
    # both paths were exercised (the seed fixes the split)
    assert outcomes["read"] > 20 and outcomes["refused"] > 20, outcomes
