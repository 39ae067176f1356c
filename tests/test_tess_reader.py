"""read_lightcurve_fits on the real sample files: schema, time, flags, column maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from astropy.io import fits
from astropy.time import Time

from astropipe.errors import ConfigError, InputFileError, MissingInputError
from astropipe.lightcurve import FLAG_QUALITY_MASKED, LIGHTCURVE_SCHEMA, SURVEY_FLAGS_MASK
from astropipe.tess import (
    TESS_LIGHTCURVE_SCHEMA,
    TessReadConfig,
    file_info,
    read_lightcurve_fits,
    read_lightcurves,
)

ROOT = Path(__file__).resolve().parents[1]
TESS = ROOT / "data/sample/tess"
KEPLER = ROOT / "data/sample/kepler"
PIMEN = TESS / "test-lc-tess-pimen-100-cadences.fits"
ELEANOR = TESS / "test-lc-tess-pimen_s1_eleanor_lite-100-cadences.fits"
ALERT = TESS / "hlsp_tess-data-alerts_tess_phot_00055652896-s01_tess_v1_lc.fits"

# file → (layout, mission, object_id, season column, season, cadences in file, NaN times,
# cadence seconds); cadence counts and NaN times as PROVENANCE.md states them.
EXPECTED = {
    "hlsp_tess-data-alerts_tess_phot_00025155310-s01_tess_v1_lc.fits": (
        "spoc", "TESS", "TIC 25155310", "sector", 1, 20076, 815, 120.0),
    "hlsp_tess-data-alerts_tess_phot_00055652896-s01_tess_v1_lc.fits": (
        "spoc", "TESS", "TIC 55652896", "sector", 1, 20076, 815, 120.0),
    "test-lc-tess-pimen-100-cadences.fits": (
        "spoc", "TESS", "TIC 261136679", "sector", 1, 100, 0, 120.0),
    "test-lc-tess-pimen_s1_eleanor_lite-100-cadences.fits": (
        "eleanor", "TESS", "TIC 261136679", "sector", 1, 100, 0, 1800.0),
    "kplr011442793-2009350155506_llc.fits": (
        "kepler", "Kepler", "KIC 11442793", "quarter", 3, 4370, 142, 1765.462886),
    "kplr011442793-2010174085026_llc.fits": (
        "kepler", "Kepler", "KIC 11442793", "quarter", 5, 4634, 96, 1765.462886),
    "kplr010666592-2009131110544_slc.fits": (
        "kepler", "Kepler", "KIC 10666592", "quarter", 0, 14280, 0, 58.848763),
    "dip_llc.fits": ("kepler", "Kepler", "KIC 8462852", "quarter", 8, 490, 0, 1765.462886),
    **{
        f"ktwo{epic}-c05_llc.fits": (
            "kepler", "K2", f"EPIC {epic}", "campaign", 5, 3663, 6, 1765.462886)
        for epic in (211436265, 211495446, 211696659, 211719918, 211841249, 211874609)
    },
}  # fmt: skip


def _path(name: str) -> Path:
    return TESS / name if (TESS / name).exists() else KEPLER / name


def _sha256sums() -> dict[str, str]:
    out = {}
    for d in (TESS, KEPLER):
        for line in (d / "SHA256SUMS").read_text().splitlines():
            digest, name = line.split()
            out[(d / name).as_posix()] = digest
    return out


def test_every_sample_file_is_listed() -> None:
    found = {p.name for p in [*TESS.glob("*.fits"), *KEPLER.glob("*.fits")]}
    assert found == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_file(name: str) -> None:
    layout, mission, object_id, season_col, season, n_in, n_nan, cadence = EXPECTED[name]
    path = _path(name)
    t = read_lightcurve_fits(path)
    assert t.schema.remove_metadata() == TESS_LIGHTCURVE_SCHEMA
    # the common schema comes first, unchanged, so tables concatenate with ZTF's
    assert t.select(LIGHTCURVE_SCHEMA.names).schema.remove_metadata() == LIGHTCURVE_SCHEMA
    df = t.to_pandas()
    assert len(df) == n_in - n_nan
    assert set(df["object_id"]) == {object_id}
    assert set(df["survey"]) == {mission} == set(df["mission"])
    assert set(df["source"]) == {layout}
    assert set(df[season_col]) == {season}
    for other in {"sector", "quarter", "campaign"} - {season_col}:
        assert df[other].isna().all()
    assert df["cadence_s"].iloc[0] == pytest.approx(cadence, abs=1e-6)
    assert np.all(np.diff(df["mjd"]) > 0)  # file order is time order once NaN times are gone
    assert not df["is_upper_limit"].any() and df["mag"].isna().all()
    assert ((df["flags"] & SURVEY_FLAGS_MASK) == df["quality"]).all()
    info = file_info(t)
    assert info["cadences_in_file"] == n_in and info["nan_time_dropped"] == n_nan
    assert info["time"]["scale"] == "TDB"
    assert info["sha256"] == _sha256sums()[path.as_posix()]
    with fits.open(path) as hdul:
        assert df["ra"].iloc[0] == hdul[0].header["RA_OBJ"]
        assert df["dec"].iloc[0] == hdul[0].header["DEC_OBJ"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_mjd_equals_astropy_within_a_microsecond(name: str) -> None:
    path = _path(name)
    with fits.open(path) as hdul:
        h = hdul[1].header if "BJDREFI" in hdul[1].header else hdul[0].header
        time = np.asarray(hdul[1].data["TIME"], dtype=float)
        ref = h["BJDREFI"] + h["BJDREFF"]
    time = time[np.isfinite(time)]
    expected = Time(np.full(len(time), ref), time, format="jd", scale="tdb").mjd
    got = read_lightcurve_fits(path)["mjd"].to_numpy()
    assert np.max(np.abs(got - expected)) * 86400 < 1e-6
    # pinned order of operations: ((BJDREFI - 2400000.5) + BJDREFF) + TIME
    assert np.array_equal(got, time + ((h["BJDREFI"] - 2400000.5) + h["BJDREFF"]))


def test_pimen_values() -> None:
    t = read_lightcurve_fits(PIMEN).to_pandas()
    with fits.open(PIMEN) as hdul:
        d = hdul[1].data
        np.testing.assert_array_equal(t["flux"], d["PDCSAP_FLUX"].astype(float))
        np.testing.assert_array_equal(t["flux_err"], d["PDCSAP_FLUX_ERR"].astype(float))
        np.testing.assert_array_equal(t["cadenceno"], d["CADENCENO"])
        np.testing.assert_array_equal(t["quality"], d["QUALITY"])
    assert set(t["flux_column"]) == {"PDCSAP_FLUX"}
    # one cadence of this cut has QUALITY 8 (EarthPoint), a default-preset bit
    masked = (t["flags"] & FLAG_QUALITY_MASKED) != 0
    assert t.loc[masked, "quality"].tolist() == [8]
    assert t.loc[masked, "flags"].tolist() == [8 | FLAG_QUALITY_MASKED]
    # TSTART = 1325.29488 BTJD = MJD 58324.79488 (2018-07-25 19:04 TDB); first cadence mid-time
    assert t["mjd"].iloc[0] == pytest.approx(58324.795572, abs=1e-6)


def test_sap_flux_by_choice() -> None:
    t = read_lightcurve_fits(ALERT, TessReadConfig(flux_column="sap")).to_pandas()
    with fits.open(ALERT) as hdul:
        d = hdul[1].data
        keep = np.isfinite(d["TIME"])
        np.testing.assert_array_equal(t["flux"], d["SAP_FLUX"][keep].astype(float))
        np.testing.assert_array_equal(t["flux_err"], d["SAP_FLUX_ERR"][keep].astype(float))
    assert set(t["flux_column"]) == {"SAP_FLUX"}


@pytest.mark.parametrize(
    ("flux", "column"),
    [("pdcsap", "CORR_FLUX"), ("pca", "PCA_FLUX"), ("psf", "PSF_FLUX"), ("sap", "RAW_FLUX")],
)
def test_eleanor_columns_through_the_column_map(flux: str, column: str) -> None:
    t = read_lightcurve_fits(ELEANOR, TessReadConfig(flux_column=flux)).to_pandas()
    with fits.open(ELEANOR) as hdul:
        d = hdul[1].data
        np.testing.assert_array_equal(t["flux"], d[column])
        # FLUX_ERR belongs to RAW_FLUX: its relative error carries over to other fluxes
        err = d["FLUX_ERR"] if column == "RAW_FLUX" else d[column] * d["FLUX_ERR"] / d["RAW_FLUX"]
        np.testing.assert_array_equal(t["flux_err"], err)
        np.testing.assert_array_equal(t["cadenceno"], d["FFIINDEX"].astype(int))
    assert set(t["flux_column"]) == {column} and set(t["cadence_s"]) == {1800.0}


def test_flux_the_layout_lacks_is_a_file_error() -> None:
    with pytest.raises(InputFileError, match=r"spoc: defines no flux 'psf'"):
        read_lightcurve_fits(PIMEN, TessReadConfig(flux_column="psf"))


def _edit(src: Path, dst: Path, **cards: object) -> Path:
    """Copy ``src`` with header cards of HDU 0/1 changed (None deletes), to ``dst``."""
    with fits.open(src) as hdul:
        for key, value in cards.items():
            ext, _, name = key.partition("__")
            h = hdul[int(ext[1:])].header
            if value is None:
                h.remove(name, ignore_missing=True)
            else:
                h[name] = value
        hdul.writeto(dst)
    return dst


def test_unseen_sector_release_and_camera_read_without_code_changes(tmp_path: Path) -> None:
    path = _edit(
        PIMEN, tmp_path / "s61.fits",
        h0__SECTOR=61, h0__DATA_REL=65, h0__PROCVER="spoc-6.0.0-20230101", h0__CAMERA=1,
        h1__TIMEDEL=200 / 86400,
    )  # fmt: skip
    t = read_lightcurve_fits(path).to_pandas()
    assert set(t["sector"]) == {61} and set(t["cadence_s"]) == {200.0}
    assert file_info(read_lightcurve_fits(path))["data_release"] == 65


def test_new_hlsp_layout_is_a_column_map_not_code(tmp_path: Path) -> None:
    """The pi Men cut rewritten as an imaginary HLSP: other names, no BJDREF, id as TIC."""
    with fits.open(PIMEN) as hdul:
        d = hdul[1].data
        cols = fits.ColDefs(
            [
                fits.Column("BTJD", "D", array=d["TIME"]),
                fits.Column("FLUX_DETREND", "E", array=d["PDCSAP_FLUX"]),
                fits.Column("FLUX_DETREND_ERR", "E", array=d["PDCSAP_FLUX_ERR"]),
                fits.Column("FLAGS", "J", array=d["QUALITY"]),
            ]
        )
        primary = fits.PrimaryHDU()
        primary.header.update(TELESCOP="TESS", SECTOR=1, TIC=261136679, RA_OBJ=84.29)
        table = fits.BinTableHDU.from_columns(cols, name="PHOTOMETRY")
        fits.HDUList([primary, table]).writeto(tmp_path / "hlsp.fits")
    with pytest.raises(InputFileError, match="unknown light-curve layout .*lacks columns"):
        read_lightcurve_fits(tmp_path / "hlsp.fits")
    cfg = TessReadConfig.from_mapping(
        {
            "layouts": {
                "my-hlsp": {
                    "quality_family": "tess",
                    "match": {"TELESCOP": "TESS"},
                    "extension": "PHOTOMETRY",
                    "time": "BTJD",
                    "quality": "FLAGS",
                    "cadenceno": None,
                    "fluxes": {"pdcsap": {"flux": "FLUX_DETREND", "err": "FLUX_DETREND_ERR"}},
                    "target_keys": ["TIC"],
                    "time_reference_jd": 2457000.0,
                    "cadence_s": 120.0,
                }
            }
        }
    )
    got = read_lightcurve_fits(tmp_path / "hlsp.fits", cfg).to_pandas()
    want = read_lightcurve_fits(PIMEN).to_pandas()
    for col in ("object_id", "mjd", "flux", "flux_err", "quality", "flags", "sector"):
        np.testing.assert_array_equal(got[col], want[col])
    assert set(got["source"]) == {"my-hlsp"} and got["cadenceno"].isna().all()
    assert (
        file_info(read_lightcurve_fits(tmp_path / "hlsp.fits", cfg))["time"]["reference_source"]
        == "column map"
    )


def test_eleanor_without_bjdref_uses_the_column_map_reference(tmp_path: Path) -> None:
    path = _edit(ELEANOR, tmp_path / "e.fits", h0__BJDREFI=None, h0__BJDREFF=None)
    got = read_lightcurve_fits(path)
    assert file_info(got)["time"]["reference_source"] == "column map"
    want = read_lightcurve_fits(ELEANOR)
    assert got["mjd"].equals(want["mjd"])


@pytest.mark.parametrize(
    ("cards", "message"),
    [
        ({"h1__BJDREFI": None, "h1__BJDREFF": None}, "no time reference"),
        ({"h1__TIMESYS": "UTC"}, "TIMESYS='UTC', expected 'TDB'"),
        ({"h1__TIMEREF": "LOCAL"}, "TIMEREF='LOCAL'"),
        ({"h1__TIMEUNIT": "s"}, "TIMEUNIT='s'"),
        ({"h1__BJDREFI": "2457000"}, "BJDREFI='2457000' is not a number"),
        ({"h0__TICID": None, "h1__TICID": None}, r"no catalogue id .*\['TICID'\]"),
        ({"h0__MISSION": "Hubble"}, "unknown mission MISSION/TELESCOP='Hubble'"),
        ({"h0__SECTOR": "one"}, "SECTOR='one' is not an integer"),
    ],
)
def test_header_problems_name_the_file_and_keyword(tmp_path: Path, cards, message) -> None:
    path = _edit(PIMEN, tmp_path / "x.fits", **cards)
    with pytest.raises(InputFileError, match=message) as err:
        read_lightcurve_fits(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_bjdref_single_keyword_is_honoured(tmp_path: Path) -> None:
    path = _edit(
        PIMEN, tmp_path / "x.fits", h1__BJDREFI=None, h1__BJDREFF=None, h1__BJDREF=2457000.0
    )
    assert read_lightcurve_fits(path)["mjd"].equals(read_lightcurve_fits(PIMEN)["mjd"])


def test_missing_file() -> None:
    with pytest.raises(MissingInputError, match="nope.fits: file not found"):
        read_lightcurve_fits(TESS / "nope.fits")


def test_read_many_quarantines_and_goes_on() -> None:
    paths = [PIMEN, *sorted((TESS / "bad").glob("*.fits")), ELEANOR]
    res = read_lightcurves(paths)
    assert res.table.num_rows == 200 and [f["layout"] for f in res.files] == ["spoc", "eleanor"]
    assert [Path(q["file"]).name for q in res.quarantined] == [
        p.name for p in sorted((TESS / "bad").glob("*.fits"))
    ]
    assert isinstance(res.table, pa.Table) and res.table.schema.metadata is None
    with pytest.raises(InputFileError):
        read_lightcurves(paths, fail=True)


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="flux_column='kspsap'.*'pdcsap'"):
        TessReadConfig(flux_column="kspsap")
    with pytest.raises(ConfigError, match=r"unknown keys \['flux'\]"):
        TessReadConfig.from_mapping({"flux": "sap"})
    with pytest.raises(ConfigError, match=r"tess.layouts.x: unknown keys \['colums'\]"):
        TessReadConfig.from_mapping({"layouts": {"x": {"colums": {}}}})
    with pytest.raises(ConfigError, match="only TDB"):
        TessReadConfig.from_mapping(
            {"layouts": {"x": {"quality_family": "tess", "fluxes": {"pdcsap": "F"},
                               "target_keys": ["TICID"], "time_scale": "UTC"}}}
        )  # fmt: skip


def test_threaded_reads_do_not_capture_each_others_warnings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review 1.3: ``warnings.catch_warnings(record=True)`` inside each read is process-global.

    Two files read at once on two threads: B's capture recorded A's warning and B's quarantine
    reason then named A's problem (or A's capture kept both and B's reason lost its own); the
    captures were also left installed, so later warnings went nowhere. The reader takes what it
    says about a file from the scan, never from a warning capture; astropy's warnings go where
    the caller's go.
    """
    import threading
    import warnings

    from astropipe.compute import ComputeConfig, workers
    from astropipe.tess import reader

    real_scan = reader.scan_hdus
    both_in = threading.Barrier(2, timeout=10)
    a_warned = threading.Event()
    both_warned = threading.Barrier(2, timeout=10)

    def scan(raw: bytes, where: str) -> reader.Scan:
        me = "A" if where.endswith("a.fits") else "B"
        both_in.wait()  # both reads are inside read_lightcurve_fits now
        if me == "B":
            assert a_warned.wait(10)
        warnings.warn(
            f"{me}.fits: file truncated at byte {1000 if me == 'A' else 2000}", stacklevel=1
        )
        if me == "A":
            a_warned.set()
        both_warned.wait()
        real_scan(raw, where)
        raise ValueError(f"{me} is damaged")  # → quarantined, as a damaged file is

    monkeypatch.setattr(reader, "scan_hdus", scan)
    a, b = tmp_path / "a.fits", tmp_path / "b.fits"
    for p in (a, b):
        p.write_bytes(PIMEN.read_bytes())
    before = warnings.showwarning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with workers(ComputeConfig(scheduler="threads", workers=2)) as pool:
            res = read_lightcurves([a, b], pool=pool)
        warnings.warn("after the reads", stacklevel=1)
    reasons = {Path(q["file"]).name: q["reason"] for q in res.quarantined}
    assert set(reasons) == {"a.fits", "b.fits"}
    assert "byte 2000" not in reasons["a.fits"] and "byte 1000" not in reasons["b.fits"]
    assert sorted(str(w.message) for w in caught) == [
        "A.fits: file truncated at byte 1000",
        "B.fits: file truncated at byte 2000",
        "after the reads",
    ]
    assert warnings.showwarning is before
