"""ZTF DR bulk Parquet → common light-curve frame, on the real DR5 sample file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import SkyCoord
from astropy.time import Time
from astropy.utils import iers

from astropipe.errors import InputFileError, MissingInputError
from astropipe.lightcurve import LIGHTCURVE_SCHEMA, to_lightcurve_table
from astropipe.ztf.config import DrConfig
from astropipe.ztf.dr import (
    DR_EXPTIME_S,
    PALOMAR,
    hmjd_to_mjd,
    mjd_to_hmjd,
    read_dr_lightcurves,
)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "data/sample/ztf/irsa"
SAMPLE = SAMPLE_DIR / "DR5_field0202_example_tests.parquet"
SAMPLE_SHA256 = "e8608b40c4984895092d3520a6a5ae054f19ed5039311366ba44fa54d9fb4553"  # SHA256SUMS


@pytest.fixture(scope="module")
def dr() -> tuple[pd.DataFrame, dict[str, str]]:
    return read_dr_lightcurves(DrConfig(path=str(SAMPLE_DIR), bad_catflags_mask=32768))


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return pq.read_table(SAMPLE).to_pandas()


def test_row_counts_match_the_file(dr, raw):
    frame, _ = dr
    flags = np.concatenate(raw["catflags"].to_numpy()).astype(np.int64)
    assert len(raw) == 3003 and len(flags) == 30766 == raw["nepochs"].sum()
    bad = (flags & 32768) != 0
    assert bad.sum() == 2947  # catflags 32768, 32769, 33024 and 65535 in this file
    assert len(frame) == 30766 - 2947 == 27819
    assert frame["object_id"].nunique() == 2889
    assert list(frame.columns) == LIGHTCURVE_SCHEMA.names
    assert set(frame["band"]) == {"zg"} and set(frame["source"]) == {"dr"}
    assert (frame["flags"] & 32768).eq(0).all()


def test_known_object_first_epoch(dr):
    frame, _ = dr
    obj = frame[frame["object_id"] == "202116200000000"]
    assert len(obj) == 2
    first = obj.iloc[0]
    # First epoch in the file: hmjd 59193.167969, mag 19.977158, magerr 0.176094 (float32).
    assert first["mag"] == pytest.approx(19.977158, abs=1e-6)
    assert first["mag_err"] == pytest.approx(0.176094, abs=1e-6)
    assert first["ra"] == pytest.approx(20.444105, abs=1e-6)
    assert first["dec"] == pytest.approx(-27.652498, abs=1e-6)
    assert first["band"] == "zg" and first["flags"] == 0 and not first["is_upper_limit"]
    hmjd = float(np.float32(59193.167969))
    # Start of exposure: 15 s and the light-travel time (~3.5 min for this position) earlier.
    assert 0.001 < hmjd - first["mjd"] < 0.007
    assert first["mjd"] == pytest.approx(
        hmjd_to_mjd(hmjd, first["ra"], first["dec"], exptime_s=DR_EXPTIME_S)[0], abs=1e-12
    )


def test_flagged_epoch_is_dropped(dr, raw):
    frame, _ = dr
    row = raw[raw["objectid"] == 202116200000006].iloc[0]
    assert row["catflags"][4] == 32768 and len(row["catflags"]) == 15
    obj = frame[frame["object_id"] == "202116200000006"]
    assert len(obj) == 14
    assert not np.isclose(obj["mag"], float(row["mag"][4]), atol=1e-7).any()
    np.testing.assert_allclose(
        obj["mag"].to_numpy(), np.delete(row["mag"].astype("float64"), 4), rtol=0, atol=0
    )


def test_provenance_is_relative_path_and_sha256(dr, monkeypatch):
    monkeypatch.chdir(ROOT)
    _, inputs = read_dr_lightcurves(DrConfig(path="data/sample/ztf/irsa"))
    assert inputs == {"data/sample/ztf/irsa/DR5_field0202_example_tests.parquet": SAMPLE_SHA256}


def test_frame_fits_the_common_table(dr):
    frame, _ = dr
    table = to_lightcurve_table(frame)
    assert table.schema == LIGHTCURVE_SCHEMA
    assert table.num_rows == len(frame)  # no (object_id, mjd, band) duplicates


def test_hmjd_to_mjd_round_trip_against_astropy(raw):
    ra = np.repeat(raw["objra"].to_numpy(dtype="float64"), raw["nepochs"].to_numpy())
    dec = np.repeat(raw["objdec"].to_numpy(dtype="float64"), raw["nepochs"].to_numpy())
    hmjd = np.concatenate(raw["hmjd"].to_numpy()).astype("float64")
    sel = slice(0, 3000)
    mjd = hmjd_to_mjd(hmjd[sel], ra[sel], dec[sel])
    # astropy directly, per epoch: mjd + ltt(mjd) == hmjd.
    with iers.conf.set_temp("auto_download", False):
        t = Time(mjd, format="mjd", scale="utc", location=PALOMAR)
        ltt = t.light_travel_time(SkyCoord(ra[sel] * u.deg, dec[sel] * u.deg), kind="heliocentric")
    np.testing.assert_allclose(mjd + ltt.to_value(u.day), hmjd[sel], rtol=0, atol=1e-7)
    assert np.abs(ltt.to_value(u.s)).max() < 500.5  # at most 1 au / c
    back = mjd_to_hmjd(hmjd_to_mjd(hmjd, ra, dec, exptime_s=30), ra, dec, exptime_s=30)
    np.testing.assert_allclose(back, hmjd, rtol=0, atol=1e-7)


def test_conversion_matches_a_live_irsa_row():
    """One nph_light_curves row recorded from IRSA (a public repository's notes, 2026-09-05):
    oid 675103300002930, hjd 2458202.8577286243, mjd 58202.353159699996 (start of the 30-s
    exposure), ra 209.99005510000001, dec 29.997625800000002. IRSA's hjd is mid-exposure."""
    hmjd = 2458202.8577286243 - 2400000.5
    mjd = hmjd_to_mjd(hmjd, 209.99005510000001, 29.997625800000002, exptime_s=30.0)[0]
    assert mjd == pytest.approx(58202.353159699996, abs=1e-8)  # < 1 ms
    mid = hmjd_to_mjd(hmjd, 209.99005510000001, 29.997625800000002)[0]
    assert (mid - 58202.353159699996) * 86400 == pytest.approx(15.0, abs=1e-3)


def test_truncated_parquet_names_the_file(tmp_path):
    bad = tmp_path / "lc.parquet"
    bad.write_bytes(SAMPLE.read_bytes()[: SAMPLE.stat().st_size // 2])
    with pytest.raises(InputFileError, match=r"lc\.parquet.*truncated"):
        read_dr_lightcurves(DrConfig(path=str(tmp_path)))


def test_missing_columns_names_the_file_and_columns(tmp_path):
    table = pq.read_table(SAMPLE).drop_columns(["catflags", "objra"])
    pq.write_table(table, tmp_path / "nocat.parquet")
    with pytest.raises(
        InputFileError, match=r"nocat\.parquet: missing column\(s\) \['objra', 'catflags'\]"
    ):
        read_dr_lightcurves(DrConfig(path=str(tmp_path)))


def test_ragged_list_columns_are_refused(tmp_path):
    table = pq.read_table(SAMPLE).slice(0, 3)
    mag = table["mag"].to_pylist()
    mag[1] = mag[1][:-1]
    table = table.set_column(
        table.schema.get_field_index("mag"), "mag", pa.array(mag, pa.list_(pa.float32()))
    )
    pq.write_table(table, tmp_path / "ragged.parquet")
    with pytest.raises(InputFileError, match=r"ragged\.parquet: list column 'mag'"):
        read_dr_lightcurves(DrConfig(path=str(tmp_path)))


def test_empty_directory_and_missing_path(tmp_path):
    with pytest.raises(MissingInputError, match="no \\*.parquet file"):
        read_dr_lightcurves(DrConfig(path=str(tmp_path)))
    with pytest.raises(MissingInputError, match="no such file"):
        read_dr_lightcurves(DrConfig(path=str(tmp_path / "nope")))


def test_several_files_are_read_in_sorted_order(tmp_path):
    sub = tmp_path / "b"
    sub.mkdir()
    table = pq.read_table(SAMPLE)
    pq.write_table(table.slice(0, 1000), tmp_path / "a.parquet")
    pq.write_table(table.slice(1000), sub / "c.parquet")
    shutil.copy(SAMPLE_DIR / "ztfdr_640202200001881.csv", tmp_path)  # not Parquet: ignored
    frame, inputs = read_dr_lightcurves(DrConfig(path=str(tmp_path)))
    assert len(inputs) == 2 and len(frame) == 27819
    whole, _ = read_dr_lightcurves(DrConfig(path=str(SAMPLE)))
    pd.testing.assert_frame_equal(frame, whole)


def test_reading_needs_no_network(tmp_path):
    """A fresh interpreter with every socket connect refused still converts the times."""
    script = (
        "import socket\n"
        "def refuse(*a, **k):\n"
        "    raise OSError('network disabled by the test')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from astropipe.ztf.config import DrConfig\n"
        "from astropipe.ztf.dr import read_dr_lightcurves\n"
        f"frame, _ = read_dr_lightcurves(DrConfig(path={str(SAMPLE_DIR)!r}))\n"
        "print(len(frame))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "27819"
