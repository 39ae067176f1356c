"""The validate stage on small synthetic tables: good tables pass, each broken one fails by name.

The frames and cubes contracts are tested in test_validation_images.py.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from astropipe.config import load_params  # noqa: E402
from astropipe.errors import (  # noqa: E402
    ConfigError,
    InputFileError,
    MissingInputError,
    ValidationFailed,
)
from astropipe.features.extract import OUTPUT_COLUMNS as FEATURE_COLUMNS  # noqa: E402
from astropipe.io.tables import write_parquet  # noqa: E402
from astropipe.lightcurve import to_lightcurve_table  # noqa: E402
from astropipe.validation.stage import run  # noqa: E402
from astropipe.ztf.packetlog import PacketLog  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FEATURE_FLOATS = [c for c in FEATURE_COLUMNS if c != "n_obs"]


@pytest.fixture(scope="session")
def params() -> dict[str, Any]:
    """The repository's composed params, tables only (frames and cubes: test_validation_images)."""
    p = load_params(ROOT / "params.yaml")
    p["validation"].pop("frames", None)
    p["validation"].pop("cubes", None)
    p["validation"].pop("tess_lightcurves", None)  # its own tests: test_tess_stage
    for name in ("mast_observations", "mast_products"):  # their own tests: test_mast_contracts
        p["validation"]["tables"].pop(name, None)
    for name in ("koi", "toi", "objects"):  # their own tests: test_catalogs_contracts
        p["validation"]["tables"].pop(name, None)
    return p


def lightcurves() -> pd.DataFrame:
    """Two objects, two bands, one upper limit (null mag), ra near both ends of [0, 360).

    Built through :func:`to_lightcurve_table`, so it has the exact light-curve schema.
    """
    base = pd.DataFrame(
        {
            "object_id": ["ZTF18aaaaaaa"] * 3 + ["ZTF19bbbbbbb"] * 2,
            "survey": "ZTF",
            "source": ["alert", "alert", "alert", "dr", "dr"],
            "band": ["zg", "zg", "zr", "zg", "zg"],
            "mjd": [58194.1, 58195.2, 58194.1, 60229.43, 60230.41],
            "mag": [18.0, 18.5, np.nan, 19.0, 19.5],
            "mag_err": [0.05, 0.06, np.nan, 0.1, 0.1],
            "limiting_mag": [20.5, 20.4, 20.1, 20.0, 20.0],
            "is_upper_limit": [False, False, True, False, False],
            "ra": [0.0, 0.0, 0.0, 359.99, 359.99],
            "dec": [-90.0, -90.0, -90.0, 90.0, 90.0],
        }
    )
    return to_lightcurve_table(base).to_pandas()


def alerts() -> pd.DataFrame:
    """Three alerts, one from a 2016 v1.1 test packet (negative candid, MJD 57581)."""
    return pd.DataFrame(
        {
            "objectId": [None, "ZTF18aaaaaaa", "ZTF19bbbbbbb"],  # v1.x packets have none
            "alertId": [1726958725155000, None, None],
            "candid": np.array([-1726958725155000, 396522680015020000, 2475433850015010009]),
            "jd": [2457581.80414, 2458194.6, 2460229.93],
            "mjd": [57581.30414, 58194.1, 60229.43],
            "fid": np.array([2, 1, 1], dtype=np.int32),
            "band": ["zr", "zg", "zg"],
            "ra": [296.856794, 0.0, 359.99],
            "dec": [44.104803, -90.0, 90.0],
            "magpsf": np.array([19.6, 18.0, 19.0], dtype=np.float32),
            "sigmapsf": np.array([0.2, 0.05, 0.1], dtype=np.float32),
            "rb": np.array([1.0, 0.28, 0.75], dtype=np.float32),
            "drb": np.array([np.nan, np.nan, 0.99], dtype=np.float32),
            "isdiffpos": ["t", "f", "t"],
            "programid": np.array([64, 0, 1], dtype=np.int32),
            "schemavsn": ["1.1", "1.7", "4.01"],
            "packet": ["a.avro", "b.avro", "c.avro"],  # not in the contract: allowed
        }
    )


def features() -> pd.DataFrame:
    """One row per (object_id, band); skew/kurtosis undefined (NaN) for the short group."""
    df = pd.DataFrame(
        {
            "object_id": ["ZTF18aaaaaaa", "ZTF19bbbbbbb"],
            "band": ["zg", "zg"],
            "survey": ["ZTF", "ZTF"],
            "n_obs": [2, 2],
        }
    )
    for col in FEATURE_FLOATS:
        df[col] = 0.5
    # the survey contract checks each row's first and last MJD against ZTF's era
    df["mjd_first"] = [58194.1, 60229.43]
    df["mjd_last"] = [58195.2, 60230.41]
    df["mjd_peak"] = [58194.1, 60229.43]
    df["mean"] = [18.25, 19.25]
    df["median"] = [18.25, 19.25]
    df["skew"] = [np.nan, 0.1]
    df["kurtosis"] = [np.nan, -1.2]
    return df


def write_tables(
    lc: pd.DataFrame | None = None,
    al: pd.DataFrame | None = None,
    ft: pd.DataFrame | None = None,
) -> None:
    """Write the three tables, as given (broken ones too), at the configured relative paths,
    and the packets table whose aggregate the alerts' provenance records, as ingest_ztf does."""
    packets = PacketLog(Path("data/raw/ztf/packets.parquet"), {}, name="packets.parquet")
    packets.add([(f"{c}.avro", hashlib.sha256(c.encode()).hexdigest()) for c in "abc"])
    record = packets.close()
    frames = {
        "data/raw/ztf/lightcurves.parquet": lightcurves() if lc is None else lc,
        "data/raw/ztf/alerts.parquet": alerts() if al is None else al,
        "data/processed/features.parquet": features() if ft is None else ft,
    }
    for path, df in frames.items():
        prov = {"packets": record} if path.endswith("alerts.parquet") else {}
        write_parquet(pa.Table.from_pandas(df, preserve_index=False), path, provenance=prov)


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory (the configured paths are relative)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


SUMMARY = Path("reports/validation/summary.json")
DOCS = Path("reports/validation/docs")


def test_good_tables_pass(workdir: Path, params: dict[str, Any], gx_context: Any) -> None:
    write_tables()
    summary = run(params, context=gx_context)
    assert summary["success"] is True
    assert summary["failed"] == 0
    assert set(summary["tables"]) == {"alerts", "lightcurves", "packets", "features"}
    assert summary["tables"]["packets"]["rows"] == 3
    assert summary["tables"]["lightcurves"]["rows"] == 5
    assert summary["tables"]["alerts"]["rows"] == 3
    assert summary["tables"]["features"]["rows"] == 2
    for name, entry in summary["tables"].items():
        assert entry["success"] is True
        assert entry["expectations"] > (10 if name == "packets" else 30)
        assert entry["failures"] == []
    assert json.loads(SUMMARY.read_text()) == summary
    assert sorted(p.name for p in DOCS.iterdir()) == [
        "alerts.md",
        "features.md",
        "index.md",
        "lightcurves.md",
        "packets.md",
    ]
    assert "PASSED" in (DOCS / "index.md").read_text()


def _set(df: pd.DataFrame, col: str, row: int, value: Any) -> pd.DataFrame:
    df = df.copy()
    df.loc[row, col] = value
    return df


def _dup_key(df: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([df, df.iloc[[1]]], ignore_index=True)


def _drop(col: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda df: df.drop(columns=[col])


BREAKS = {
    # id: (table, change, column, expectation)
    "lc-ra-360": ("lightcurves", lambda d: _set(d, "ra", 1, 360.0), "ra", "between"),
    "lc-dec-minus-91": ("lightcurves", lambda d: _set(d, "dec", 0, -91.0), "dec", "between"),
    "lc-duplicate-key": (
        "lightcurves",
        _dup_key,
        "object_id,mjd,band",
        "expect_compound_columns_to_be_unique",
    ),
    "lc-mag-99": ("lightcurves", lambda d: _set(d, "mag", 0, 99.0), "mag", "between"),
    "lc-mjd-40000": ("lightcurves", lambda d: _set(d, "mjd", 4, 40000.0), "mjd", "between"),
    "lc-band-unknown": ("lightcurves", lambda d: _set(d, "band", 0, "r"), "band", "in_set"),
    # a Kepler band on a ZTF row: allowed somewhere, not for this survey
    "lc-band-other-survey": (
        "lightcurves",
        lambda d: _set(d, "band", 0, "Kepler"),
        "band",
        "in_set",
    ),
    "lc-survey-unknown": ("lightcurves", lambda d: _set(d, "survey", 0, "ztf"), "survey", "in_set"),
    "lc-detection-without-mag": (
        "lightcurves",
        lambda d: _set(d, "mag", 1, np.nan),
        "mag",
        "expect_column_values_to_not_be_null",
    ),
    "lc-missing-column": ("lightcurves", _drop("flags"), "flags", "expect_column_to_exist"),
    "lc-wrong-dtype": (
        "lightcurves",
        lambda d: d.assign(mjd=d["mjd"].astype(str)),
        "mjd",
        "expect_column_values_to_be_of_type",
    ),
    "alerts-magpsf-99": (
        "alerts",
        lambda d: d.assign(magpsf=np.array([99.0, 18.0, 19.0], dtype=np.float32)),
        "magpsf",
        "between",
    ),
    "alerts-mjd-40000": ("alerts", lambda d: _set(d, "mjd", 2, 40000.0), "mjd", "between"),
    "alerts-ra-360": ("alerts", lambda d: _set(d, "ra", 0, 360.0), "ra", "between"),
    "alerts-candid-duplicate": (
        "alerts",
        lambda d: d.assign(candid=np.array([1, 2, 2])),
        "candid",
        "expect_column_values_to_be_unique",
    ),
    "alerts-objectid-null": (
        "alerts",
        lambda d: _set(d, "objectId", 1, None),  # a v3+ alert (alertId null) without objectId
        "objectId",
        "expect_column_values_to_not_be_null",
    ),
    "alerts-missing-column": ("alerts", _drop("candid"), "candid", "expect_column_to_exist"),
    "alerts-wrong-dtype": (
        "alerts",
        lambda d: d.assign(fid=d["fid"].astype("float64")),
        "fid",
        "expect_column_values_to_be_in_type_list",
    ),
    "features-duplicate-key": (
        "features",
        lambda d: _set(d, "object_id", 1, "ZTF18aaaaaaa"),
        "object_id,band",
        "expect_compound_columns_to_be_unique",
    ),
    "features-missing-column": (
        "features",
        _drop("amplitude"),
        "amplitude",
        "expect_column_to_exist",
    ),
    "features-wrong-dtype": (
        "features",
        lambda d: d.assign(n_obs=d["n_obs"].astype("float64")),
        "n_obs",
        "expect_column_values_to_be_of_type",
    ),
    "features-negative-std": ("features", lambda d: _set(d, "std", 0, -1.0), "std", "between"),
    # Kepler-era times on a ZTF row
    "features-mjd-first-55000": (
        "features",
        lambda d: _set(d, "mjd_first", 0, 55000.0),
        "mjd_first",
        "between",
    ),
    "features-missing-survey": ("features", _drop("survey"), "survey", "expect_column_to_exist"),
}


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_one_break_fails_naming_table_column_expectation(
    case: str, workdir: Path, params: dict[str, Any], gx_context: Any
) -> None:
    table, change, column, expectation = BREAKS[case]
    frames = {"lightcurves": lightcurves(), "alerts": alerts(), "features": features()}
    frames[table] = change(frames[table])
    write_tables(frames["lightcurves"], frames["alerts"], frames["features"])
    with pytest.raises(ValidationFailed) as info:
        run(params, context=gx_context)
    msg = str(info.value)
    assert "\n" not in msg
    assert f"table '{table}'" in msg
    assert f"column '{column}'" in msg
    assert expectation in msg.split(" failed ")[0]
    # the outputs are written before the failure is raised, and name the same failure
    summary = json.loads(SUMMARY.read_text())
    assert summary["success"] is False
    entry = summary["tables"][table]
    assert entry["success"] is False
    first = entry["failures"][0]
    assert first["column"] == column
    assert expectation in first["expectation"]
    others = {"lightcurves", "alerts", "features"} - {table}
    assert all(summary["tables"][t]["success"] for t in others)
    assert "FAILED" in (DOCS / f"{table}.md").read_text()


def test_failure_reports_observed_values(
    workdir: Path, params: dict[str, Any], gx_context: Any
) -> None:
    write_tables(_set(lightcurves(), "ra", 1, 360.0))
    with pytest.raises(
        ValidationFailed, match=r"1 of 5 non-null values unexpected, e\.g\. \[360\.0\]"
    ):
        run(params, context=gx_context)
    failure = json.loads(SUMMARY.read_text())["tables"]["lightcurves"]["failures"][0]
    assert failure == {
        "column": "ra",
        "expectation": "expect_column_values_to_be_between",
        "observed": {
            "element_count": 5,
            "missing_count": 0,
            "unexpected_count": 1,
            "unexpected_examples": [360.0],
            "unexpected_percent": 20.0,
        },
        "rule": "ra in [0, 360) deg (nulls ignored)",
    }


def test_outputs_are_byte_identical_across_runs_and_clones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, params: dict[str, Any], gx_context: Any
) -> None:
    outputs = []
    for clone in ("a", "b"):
        (tmp_path / clone).mkdir()
        monkeypatch.chdir(tmp_path / clone)
        write_tables(_set(lightcurves(), "mag", 0, 99.0))
        for _ in range(2):
            with pytest.raises(ValidationFailed):
                run(params, context=gx_context)
            files = [SUMMARY, *sorted(DOCS.iterdir())]
            outputs.append({p.as_posix(): p.read_bytes() for p in files})
    assert outputs[0] == outputs[1] == outputs[2] == outputs[3]
    text = b"".join(outputs[0].values()).decode()
    assert str(tmp_path) not in text
    for volatile in ("run_id", "batch_id", "ge_load_time", "fingerprint", '"id"'):
        assert volatile not in text


def test_missing_table_names_file_and_build_command(
    workdir: Path, params: dict[str, Any], gx_context: Any
) -> None:
    write_tables()
    Path("data/processed/features.parquet").unlink()
    with pytest.raises(MissingInputError) as info:
        run(params, context=gx_context)
    msg = str(info.value)
    assert msg.startswith("data/processed/features.parquet: table 'features' not found")
    assert "`dvc repro build_lightcurve_features`" in msg
    assert not Path("reports").exists()


def test_unreadable_table_names_the_file(
    workdir: Path, params: dict[str, Any], gx_context: Any
) -> None:
    write_tables()
    Path("data/raw/ztf/alerts.parquet").write_text("<html>502 Bad Gateway</html>")
    with pytest.raises(
        InputFileError, match=r"^data/raw/ztf/alerts\.parquet: not a readable Parquet"
    ):
        run(params, context=gx_context)
    assert not Path("reports").exists()


def test_dry_run_writes_nothing_and_does_not_raise(
    workdir: Path, params: dict[str, Any], gx_context: Any
) -> None:
    write_tables(ft=_set(features(), "std", 0, -1.0))
    summary = run(params, dry_run=True, context=gx_context)
    assert summary["success"] is False
    assert summary["tables"]["features"]["failed"] == 1
    assert not Path("reports").exists()


def test_fail_on_error_false_writes_and_returns(
    workdir: Path, params: dict[str, Any], gx_context: Any
) -> None:
    p = copy.deepcopy(params)
    p["validation"]["fail_on_error"] = False
    write_tables(ft=_set(features(), "std", 0, -1.0))
    summary = run(p, context=gx_context)
    assert summary["success"] is False
    assert json.loads(SUMMARY.read_text()) == summary


def test_new_context_per_run_gives_the_same_summary(
    workdir: Path, params: dict[str, Any], gx_context: Any
) -> None:
    write_tables(al=_set(alerts(), "dec", 1, -91.0))
    with pytest.raises(ValidationFailed):
        run(params, context=gx_context)
    shared = SUMMARY.read_bytes()
    shutil.rmtree("reports")
    with pytest.raises(ValidationFailed):
        run(params)  # fresh ephemeral context
    assert SUMMARY.read_bytes() == shared


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (
            ("tables", "alerts", "completeness", "objectid"),
            1.0,
            r"unknown column\(s\) \['objectid'\]",
        ),
        (
            ("tables", "alerts", "completeness", "candid"),
            1.5,
            r"candid: 1.5 is not valid; expected a fraction in \[0, 1\]",
        ),
        (
            ("ranges", "surveys", "ZTF", "mjd"),
            [62000.0, 57000.0],
            r"validation\.ranges\.surveys\.ZTF\.mjd: expected \[min, max\]",
        ),
        (("ranges", "surveys", "ZTF"), {"mjd": [57000.0, 62000.0]}, r"surveys\.ZTF\.bands"),
        (("ranges", "mjd"), [57000.0, 62000.0], r"unknown key\(s\) \['mjd'\]"),
        (("tables", "images"), {"path": "x", "build": "y"}, r"unknown table\(s\) \['images'\]"),
        (("colour",), "red", r"unknown key\(s\) \['colour'\]"),
    ],
)
def test_config_errors_name_the_key(
    workdir: Path, params: dict[str, Any], path: tuple[str, ...], value: Any, match: str
) -> None:
    write_tables()
    p = copy.deepcopy(params)
    node = p["validation"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=match):
        run(p, dry_run=True)
