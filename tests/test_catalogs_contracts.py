"""Contracts of the catalog tables: the real sample tables pass, each broken copy fails by name."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from astropipe.catalogs.archive_csv import parse_archive_csv  # noqa: E402
from astropipe.catalogs.link import build_objects, lightcurve_targets  # noqa: E402
from astropipe.catalogs.schemas import KOI, TOI  # noqa: E402
from astropipe.config import compose  # noqa: E402
from astropipe.validation.config import RangesConfig, ValidationConfig  # noqa: E402
from astropipe.validation.runner import validate_frame  # noqa: E402
from astropipe.validation.suites import contract_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data/sample/catalogs"
RANGES = RangesConfig()


@pytest.fixture(scope="module")
def vcfg() -> ValidationConfig:
    return ValidationConfig.from_params(compose(root=ROOT))


@pytest.fixture(scope="module")
def koi() -> pd.DataFrame:
    table = parse_archive_csv((SAMPLE / "koi_cumulative.csv").read_bytes(), KOI, where="k").table
    return table.to_pandas()


@pytest.fixture(scope="module")
def toi() -> pd.DataFrame:
    return parse_archive_csv((SAMPLE / "toi.csv").read_bytes(), TOI, where="t").table.to_pandas()


def _failed(df: pd.DataFrame, name: str, vcfg: ValidationConfig, gx_context) -> list[str]:
    contract = contract_for(name, vcfg.tables[name], vcfg.ranges)
    report = validate_frame(df, contract, path=f"{name}.parquet", context=gx_context)
    assert report.rows == len(df)
    return [o.rule for o in report.failed]


def test_real_sample_catalogs_pass(koi, toi, vcfg, gx_context) -> None:
    assert _failed(koi, "koi", vcfg, gx_context) == []
    assert _failed(toi, "toi", vcfg, gx_context) == []


def test_broken_koi_fails_each_rule_by_name(koi, vcfg, gx_context) -> None:
    bad = koi.copy()
    bad.loc[0, "koi_period"] = 0.0  # period must be > 0
    bad.loc[1, "koi_prad"] = -1.0  # radius must be > 0
    bad.loc[2, "ra"] = 360.0  # [0, 360)
    bad.loc[3, "dec"] = -91.0
    bad.loc[4, "kepoi_name"] = bad.loc[5, "kepoi_name"]  # a duplicate id
    bad.loc[6, "koi_disposition"] = "MAYBE"
    assert _failed(bad, "koi", vcfg, gx_context) == [
        "kepoi_name is unique",
        "koi_period > 0 d (nulls ignored)",
        "koi_prad > 0 R_earth (nulls ignored)",
        "ra in [0, 360) deg (nulls ignored)",
        "dec in [-90, 90] deg (nulls ignored)",
        "koi_disposition in {CANDIDATE, CONFIRMED, FALSE POSITIVE, NOT DISPOSITIONED}",
    ]


def test_broken_toi_completeness_and_id_form(toi, vcfg, gx_context) -> None:
    bad = toi.copy()
    bad.loc[: len(bad) // 5, "pl_orbper"] = None  # 20 % without a period: below 95 %
    bad.loc[0, "toi"] = "216.1"  # the planet digits must stay two
    bad.loc[1, "tid"] = 0
    assert _failed(bad, "toi", vcfg, gx_context) == [
        "pl_orbper non-null in >= 95% of rows",
        "tid >= 1 (nulls ignored)",
        "toi is <star>.<two-digit planet> (e.g. 216.01), kept as written",
    ]


def test_objects_contract(koi, toi, vcfg, gx_context) -> None:
    import pyarrow as pa

    lc = pa.table({"object_id": ["TIC 55652896", "KIC 11442793"], "mission": ["TESS", "Kepler"],
                   "sector": pa.array([1, None], pa.int32())})  # fmt: skip
    tables = {"koi": pa.Table.from_pandas(koi), "toi": pa.Table.from_pandas(toi)}
    objects, _ = build_objects(tables, lightcurve_targets(lc))
    df = objects.to_pandas()
    assert len(df) == 9 and _failed(df, "objects", vcfg, gx_context) == []
    bad = pd.concat([df, df.iloc[:1]], ignore_index=True)
    bad.loc[1, "id_kind"] = "HIP"
    assert _failed(bad, "objects", vcfg, gx_context) == [
        "(catalog, catalog_id, object_id) is unique",
        "id_kind in {EPIC, KIC, TIC}",
    ]


def test_k2_contract_exists_for_live_runs(vcfg) -> None:
    from astropipe.validation.config import TableConfig

    contract = contract_for("k2", TableConfig(path="k2.parquet", build="b"), vcfg.ranges)
    assert "pl_orbper > 0 d (nulls ignored)" in [r.text for r in contract.rules]
    assert "k2" not in vcfg.tables  # no K2 table in sample mode, so none is configured
