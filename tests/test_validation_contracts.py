"""The contracts themselves: columns, rule order, edge values, and reduced GX results."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from astropipe.errors import ConfigError  # noqa: E402
from astropipe.lightcurve import LIGHTCURVE_SCHEMA, to_lightcurve_table  # noqa: E402
from astropipe.validation.config import RangesConfig, TableConfig  # noqa: E402
from astropipe.validation.report import failure_line, render_table, summarize  # noqa: E402
from astropipe.validation.runner import validate_frame  # noqa: E402
from astropipe.validation.suites import (  # noqa: E402
    build_suite,
    contract_for,
    lightcurves_contract,
)

RANGES = RangesConfig()
LC_TABLE = TableConfig(path="lc.parquet", build="make lc", completeness={"object_id": 1.0})


def _lc(**columns: Any) -> pd.DataFrame:
    base = {
        "object_id": ["a", "a", "b"],
        "survey": "ZTF",
        "source": "alert",
        "band": ["zg", "zg", "zr"],
        "mjd": [58194.0, 58195.0, 58194.0],
        "mag": [18.0, np.nan, 19.0],
        "limiting_mag": [20.0, 20.5, 20.0],
        "is_upper_limit": [False, True, False],
        "ra": [0.0, 0.0, 359.999999],
        "dec": [-90.0, -90.0, 90.0],
    }
    base.update(columns)
    return to_lightcurve_table(pd.DataFrame(base)).to_pandas()


def test_lightcurve_contract_is_the_common_schema() -> None:
    contract = lightcurves_contract(LC_TABLE, RANGES)
    assert list(contract.columns) == LIGHTCURVE_SCHEMA.names
    assert contract.columns["object_id"] == ("str",)
    assert contract.columns["mjd"] == ("float64",)
    assert contract.columns["is_upper_limit"] == ("bool",)
    assert contract.columns["flags"] == ("int64",)


def test_suite_keeps_rule_order_and_readings() -> None:
    contract = lightcurves_contract(LC_TABLE, RANGES)
    suite = build_suite(contract)
    assert suite.name == "lightcurves"
    metas = [e.meta for e in suite.expectations]
    assert [m["order"] for m in metas] == list(range(len(contract.rules)))
    assert [m["rule"] for m in metas] == [r.text for r in contract.rules]
    assert "ra in [0, 360) deg (nulls ignored)" in [r.text for r in contract.rules]
    assert "(object_id, mjd, band) is unique" in [r.text for r in contract.rules]


def test_edges_pass_upper_limits_may_lack_mag(gx_context: Any) -> None:
    contract = lightcurves_contract(LC_TABLE, RANGES)
    report = validate_frame(_lc(), contract, path="lc.parquet", context=gx_context)
    assert report.success, [(o.rule, o.observed) for o in report.failed]
    assert report.rows == 3
    assert [o.order for o in report.outcomes] == list(range(len(contract.rules)))


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"ra": [0.0, 0.0, 360.0]}, "ra in [0, 360) deg (nulls ignored)"),
        ({"ra": [-0.001, 0.0, 1.0]}, "ra in [0, 360) deg (nulls ignored)"),
        ({"dec": [-90.0, -90.0, 90.001]}, "dec in [-90, 90] deg (nulls ignored)"),
        ({"mag": [18.0, np.nan, 9.9]}, "mag in [10, 25] mag (nulls ignored)"),
        ({"limiting_mag": [20.0, 25.5, 20.0]}, "limiting_mag in [10, 25] mag (nulls ignored)"),
        (
            {"mjd": [58194.0, 58195.0, 62000.5]},
            "mjd in [57000, 62000] d where survey is ZTF (nulls ignored)",
        ),
        ({"band": ["zg", "zg", "TESS"]}, "band in {zg, zr, zi} where survey is ZTF"),
        ({"survey": ["ZTF", "ZTF", "ztf"]}, "survey in {ZTF, Kepler, K2, TESS}"),
        ({"object_id": ["a", None, "b"]}, "object_id non-null in >= 100% of rows"),
    ],
)
def test_each_edge_violation_is_the_only_failure(
    gx_context: Any, change: dict[str, Any], rule: str
) -> None:
    df = _lc()
    for col, values in change.items():
        df[col] = values
    report = validate_frame(
        df, lightcurves_contract(LC_TABLE, RANGES), path="lc", context=gx_context
    )
    assert [o.rule for o in report.failed] == [rule]
    assert report.failed[0].observed["unexpected_count"] == 1


def _kepler_and_ztf(mjd: float) -> pd.DataFrame:
    """A ZTF row at MJD 58194 and a Kepler flux row at ``mjd`` (plus a ZTF row at ``mjd``)."""
    return _lc(
        object_id=["ZTF18a", "KIC 11446443", "ZTF18b"],
        survey=["ZTF", "Kepler", "ZTF"],
        band=["zg", "Kepler", "zr"],
        mjd=[58194.0, mjd, mjd],
        mag=[18.0, np.nan, 19.0],
        is_upper_limit=[False, False, False],
        flux=[np.nan, 1.2e6, np.nan],
        flux_err=[np.nan, 30.0, np.nan],
    )


def test_mjd_and_band_are_checked_against_the_rows_survey(gx_context: Any) -> None:
    """MJD 55000 (2009-06-18) is Kepler's era, not ZTF's: the Kepler row passes and the ZTF
    row at the same time fails, alone; the message names ZTF's range."""
    contract = lightcurves_contract(LC_TABLE, RANGES)
    report = validate_frame(_kepler_and_ztf(55000.0), contract, path="lc", context=gx_context)
    assert [o.rule for o in report.failed] == [
        "mjd in [57000, 62000] d where survey is ZTF (nulls ignored)"
    ]
    assert report.failed[0].observed["unexpected_count"] == 1
    assert report.failed[0].observed["unexpected_examples"] == [55000.0]
    # the same rows with the ZTF row moved into ZTF's era: all pass
    df = _kepler_and_ztf(55000.0)
    df.loc[df["object_id"] == "ZTF18b", "mjd"] = 58195.0
    report = validate_frame(df, contract, path="lc", context=gx_context)
    assert report.success, [(o.rule, o.observed) for o in report.failed]
    # and a Kepler row in ZTF's era fails Kepler's range (prime mission ended 2013)
    df.loc[df["survey"] == "Kepler", "mjd"] = 58195.5
    report = validate_frame(df, contract, path="lc", context=gx_context)
    assert [o.rule for o in report.failed] == [
        "mjd in [54900, 56500] d where survey is Kepler (nulls ignored)"
    ]


def test_survey_ranges_are_typed_and_need_ztf() -> None:
    from astropipe.validation.config import SurveyRange

    ranges = RangesConfig(surveys={"TESS": SurveyRange(mjd=[58300.0, 62000.0], bands=["TESS"])})
    with pytest.raises(ConfigError, match=r"validation\.ranges\.surveys: no 'ZTF' entry"):
        ranges.validate()
    with pytest.raises(ConfigError, match=r"no 'ZTF' entry; listed: \['TESS'\]"):
        contract_for("alerts", TableConfig(path="a.parquet", build="make a"), ranges)
    bad = RangesConfig(surveys={"ZTF": SurveyRange(mjd=[62000.0, 57000.0], bands=["zg"])})
    with pytest.raises(ConfigError, match=r"validation\.ranges\.surveys\.ZTF\.mjd"):
        bad.validate()


def test_missing_column_is_reported_not_raised(gx_context: Any) -> None:
    df = _lc().drop(columns=["dec"])
    report = validate_frame(
        df, lightcurves_contract(LC_TABLE, RANGES), path="lc", context=gx_context
    )
    failed = {(o.expectation, o.column): o.observed for o in report.failed}
    assert ("expect_column_to_exist", "dec") in failed
    # the column's other expectations report the missing column instead of crashing the run
    between = failed[("expect_column_values_to_be_between", "dec")]
    assert between == {"error": 'Error: The column "dec" in BatchData does not exist.'}
    assert {col for _, col in failed} == {"dec"}
    line = failure_line([report])
    assert line is not None
    assert line.startswith("lc: table 'lightcurves', column 'dec': expect_column_to_exist failed")


def test_summary_and_docs_are_plain_and_ordered(gx_context: Any) -> None:
    df = _lc(mag=[99.0, np.nan, 19.0])
    report = validate_frame(
        df, lightcurves_contract(LC_TABLE, RANGES), path="lc", context=gx_context
    )
    summary = summarize([report])
    assert summary["success"] is False
    assert summary["tables_validated"] == 1
    assert summary["failed"] == 1
    assert summary["tables"]["lightcurves"]["failures"] == [
        {
            "column": "mag",
            "expectation": "expect_column_values_to_be_between",
            "observed": {
                "element_count": 3,
                "missing_count": 1,
                "unexpected_count": 1,
                "unexpected_examples": [99.0],
                "unexpected_percent": 50.0,
            },
            "rule": "mag in [10, 25] mag (nulls ignored)",
        }
    ]
    doc = render_table(report)
    assert doc.startswith("# Table `lightcurves` — FAILED\n")
    assert (
        "| **FAILED** | `expect_column_values_to_be_between` | mag | "
        "mag in [10, 25] mag (nulls ignored) | 1 of 2 non-null values unexpected, e.g. [99.0] |"
    ) in doc


def test_completeness_for_unknown_column_is_a_config_error() -> None:
    table = TableConfig(path="f", build="b", completeness={"amplitud": 1.0})
    with pytest.raises(
        ConfigError, match=r"features\.completeness: unknown column\(s\) \['amplitud'\]"
    ):
        contract_for("features", table, RANGES)


def test_unknown_table_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="valid tables are"):
        contract_for("images", LC_TABLE, RANGES)


def test_importing_validation_turns_gx_telemetry_off() -> None:
    code = (
        "import os; import astropipe.validation.runner as r; "
        "print(os.environ['GX_ANALYTICS_ENABLED'], r.make_context().config.analytics_enabled)"
    )
    env = {k: v for k, v in os.environ.items() if k != "GX_ANALYTICS_ENABLED"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["false", "False"]


# ------------------------------------------------------------------------------ packets
def _packet_tables(tmp_path: Path, n: int = 50) -> TableConfig:
    """A packets.parquet written by the packet log and an alerts.parquet whose provenance
    records its aggregate, as ingest_ztf writes them."""
    import hashlib

    from astropipe.io.tables import file_metadata, write_parquet
    from astropipe.ztf.packetlog import PacketLog

    pairs = [
        (f"night.tar.gz/{i}.avro", hashlib.sha256(str(i).encode()).hexdigest()) for i in range(n)
    ]
    log = PacketLog(tmp_path / "packets.parquet", file_metadata(), name="packets.parquet")
    log.add(pairs[: n // 2])
    log.add(pairs[n // 2 :])
    record = log.close()
    write_parquet(
        pa.table({"candid": [1]}), tmp_path / "alerts.parquet", provenance={"packets": record}
    )
    return TableConfig(
        path=str(tmp_path / "packets.parquet"),
        build="dvc repro ingest_ztf",
        recorded_in=str(tmp_path / "alerts.parquet"),
    )


def test_packets_contract_checks_the_rows_and_the_recorded_digest(
    tmp_path: Path, gx_context: Any
) -> None:
    from astropipe.validation.runner import validate_file

    table = _packet_tables(tmp_path)
    contract = contract_for("packets", table, RANGES)
    assert validate_file(table.path, contract, context=gx_context).success
    df = pq.read_table(table.path).to_pandas()

    def failed(frame: pd.DataFrame) -> set[str]:
        report = validate_frame(frame, contract, path="p", context=gx_context)
        return {o.rule.split(" (")[0] for o in report.failed}

    digest = "SHA-256 over the rows = the one alerts.parquet's provenance records"
    count = "rows = the packet count alerts.parquet's provenance records"
    upper = df.assign(sha256=df["sha256"].where(df.index != 3, df["sha256"][3].upper()))
    assert failed(upper) == {"sha256 is 64 lowercase hex digits", digest}
    assert failed(df.iloc[::-1].reset_index(drop=True)) == {digest}  # the input order counts
    assert failed(df.iloc[1:]) == {count, digest}
    dup = df.assign(packet=df["packet"].where(df.index != 1, df["packet"][0]))
    assert failed(dup) == {"packet is unique", digest}


def test_packets_contract_runs_in_a_fresh_interpreter(tmp_path: Path) -> None:
    """The custom expectation and its metric travel by reference (a processes or cluster
    worker imports them with the contract)."""
    import pickle

    from astropipe.validation.runner import Suite

    table = _packet_tables(tmp_path)
    suite = Suite(contract_for("packets", table, RANGES), "packets.parquet", read=table.path)
    (tmp_path / "suite.pkl").write_bytes(pickle.dumps(suite))
    code = (
        "import pickle, sys; from astropipe.validation.runner import run_suite; "
        "suite = pickle.loads(open(sys.argv[1], 'rb').read()); report, _ = run_suite(suite); "
        "print(report.success, len(report.outcomes))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "suite.pkl")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["True", str(len(suite.contract.rules))]


def test_packets_contract_needs_the_recorded_aggregate(tmp_path: Path) -> None:
    from astropipe.errors import InputFileError, MissingInputError
    from astropipe.io.tables import write_parquet

    table = _packet_tables(tmp_path)
    write_parquet(pa.table({"candid": [1]}), tmp_path / "alerts.parquet", provenance={})
    with pytest.raises(InputFileError, match="alerts.parquet: its provenance has no packets"):
        contract_for("packets", table, RANGES)
    (tmp_path / "alerts.parquet").unlink()
    with pytest.raises(MissingInputError, match="build it with `dvc repro ingest_ztf`"):
        contract_for("packets", table, RANGES)


def test_recorded_in_is_for_the_packets_table_only() -> None:
    from astropipe.validation.config import ValidationConfig

    def tables(**entries: dict[str, Any]) -> dict[str, Any]:
        return {"validation": {"tables": entries}}

    packets = {"path": "p", "build": "b", "recorded_in": "a"}
    assert (
        ValidationConfig.from_params(tables(packets=packets)).tables["packets"].recorded_in == "a"
    )
    with pytest.raises(ConfigError, match=r"^validation\.tables\.packets\.recorded_in: required"):
        ValidationConfig.from_params(tables(packets={**packets, "recorded_in": None}))
    with pytest.raises(ConfigError, match=r"^validation\.tables\.alerts\.recorded_in: 'a' given"):
        ValidationConfig.from_params(tables(alerts=packets))
