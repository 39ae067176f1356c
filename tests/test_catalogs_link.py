"""The objects link on the real sample catalogs and light curves, and the stage's outputs.

The light-curve table is built with the TESS/Kepler reader (astropipe.tess) straight from
data/sample/tess and data/sample/kepler, as ingest_tess writes it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from astropipe.catalogs.archive_csv import parse_archive_csv
from astropipe.catalogs.link import OBJECTS_SCHEMA, build_objects, lightcurve_targets
from astropipe.catalogs.schemas import K2, KOI, TOI
from astropipe.catalogs.stage import K2_SAMPLE_NOTE, run
from astropipe.config import compose
from astropipe.errors import ConfigError, InputFileError, MissingInputError
from astropipe.io.tables import read_metadata, write_parquet
from astropipe.tess import read_lightcurves

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data/sample"


@pytest.fixture(scope="module")
def lightcurves() -> pa.Table:
    files = sorted((SAMPLE / "tess").glob("*.fits")) + sorted((SAMPLE / "kepler").glob("*.fits"))
    res = read_lightcurves(files)
    assert res.quarantined == []
    return res.table


@pytest.fixture(scope="module")
def catalogs() -> dict[str, pa.Table]:
    return {
        "koi": parse_archive_csv(
            (SAMPLE / "catalogs/koi_cumulative.csv").read_bytes(), KOI, where="koi"
        ).table,
        "toi": parse_archive_csv(
            (SAMPLE / "catalogs/toi.csv").read_bytes(), TOI, where="toi"
        ).table,
    }


@pytest.fixture(scope="module")
def objects(catalogs, lightcurves):
    return build_objects(catalogs, lightcurve_targets(lightcurves))


def _rows(table: pa.Table, **match) -> list[dict]:
    return [r for r in table.to_pylist() if all(r[k] == v for k, v in match.items())]


def test_toi216_is_tic_55652896_in_both(objects, lightcurves) -> None:
    table, _ = objects
    assert table.schema == OBJECTS_SCHEMA
    rows = _rows(table, target_id=55652896)
    n = sum(1 for o in lightcurves["object_id"].to_pylist() if o == "TIC 55652896")
    assert n == 19261  # 20076 cadences, 815 NaN times dropped by the reader
    assert rows == [
        {"catalog": "toi", "catalog_id": cid, "id_kind": "TIC", "target_id": 55652896,
         "object_id": "TIC 55652896", "mission": "TESS", "lightcurve_rows": n, "seasons": [1]}
        for cid in ("216.01", "216.02")
    ]  # fmt: skip


def test_kepler90_is_kic_11442793_with_seven_kois(objects) -> None:
    table, _ = objects
    rows = _rows(table, object_id="KIC 11442793")
    assert [r["catalog_id"] for r in rows] == [f"K00351.0{i}" for i in range(1, 8)]
    assert {(r["catalog"], r["mission"], tuple(r["seasons"])) for r in rows} == {
        ("koi", "Kepler", (3, 5))
    }


def test_every_link_and_the_unlinked_objects(objects) -> None:
    table, stats = objects
    pairs = [(r["catalog_id"], r["object_id"]) for r in table.to_pylist()]
    assert pairs == [
        ("K00002.01", "KIC 10666592"),  # HAT-P-7 b, Q0 short cadence
        *[(f"K00351.0{i}", "KIC 11442793") for i in range(1, 8)],
        ("114.01", "TIC 25155310"),  # WASP-126 b
        ("144.01", "TIC 261136679"),  # pi Men c
        ("216.01", "TIC 55652896"),
        ("216.02", "TIC 55652896"),
    ]
    unlinked = stats["lightcurve_objects_unlinked"]
    assert unlinked["KIC"] == {"catalog_ingested": True, "object_ids": ["KIC 8462852"]}
    assert unlinked["TIC"] == {"catalog_ingested": True, "object_ids": []}
    assert unlinked["EPIC"]["catalog_ingested"] is False  # no K2 catalog in sample mode
    assert len(unlinked["EPIC"]["object_ids"]) == 6


def test_bare_numeric_object_ids_link_the_same(catalogs, lightcurves) -> None:
    bare = pa.table(
        {
            "object_id": [o.split()[-1] for o in lightcurves["object_id"].to_pylist()],
            "mission": lightcurves["mission"],
            "sector": lightcurves["sector"],
        }
    )
    table, _ = build_objects(catalogs, lightcurve_targets(bare))
    rows = _rows(table, catalog_id="216.01")
    assert [(r["target_id"], r["object_id"], r["seasons"]) for r in rows] == [
        (55652896, "55652896", [1])
    ]


def test_k2_entries_link_to_k2_light_curves(lightcurves) -> None:
    k2 = pa.table(
        {"pl_name": ["K2-x b"], "epic": pa.array([211436265], pa.int64())}
    )  # a stand-in row: no K2 catalog sample exists
    table, stats = build_objects({"k2": k2}, lightcurve_targets(lightcurves))
    assert [(r["catalog"], r["object_id"], r["mission"]) for r in table.to_pylist()] == [
        ("k2", "EPIC 211436265", "K2")
    ]
    assert K2.target_column == "epic" and stats["linked_entries"] == {"k2": 1}


def test_not_a_light_curve_table_is_refused() -> None:
    with pytest.raises(InputFileError, match=r"x.parquet: not a TESS/Kepler light-curve table"):
        lightcurve_targets(pa.table({"object_id": ["TIC 1"]}), where="x.parquet")
    bad = pa.table({"object_id": ["WASP-126"], "mission": ["TESS"]})
    with pytest.raises(InputFileError, match=r"object_id 'WASP-126' has no TIC/KIC/EPIC number"):
        lightcurve_targets(bad)


# ---------------------------------------------------------------- the stage, sample mode


@pytest.fixture()
def workdir(tmp_path, monkeypatch, lightcurves):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data/sample").symlink_to(SAMPLE)
    write_parquet(lightcurves, tmp_path / "data/raw/tess/lightcurves.parquet")
    return tmp_path


def _hashes(root: Path) -> dict[str, str]:
    files = [*sorted((root / "data/raw/catalogs").iterdir()), root / "reports/ingest_catalogs.json",
             root / "reports/metrics/ingest_catalogs.json"]  # fmt: skip
    return {
        f.relative_to(root).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest() for f in files
    }


def test_stage_outputs_are_byte_identical_and_honest_about_k2(workdir) -> None:
    params = compose(root=ROOT)
    summary = run(params)
    first = _hashes(workdir)
    assert sorted(first) == [
        "data/raw/catalogs/koi.parquet", "data/raw/catalogs/objects.parquet",
        "data/raw/catalogs/toi.parquet", "reports/ingest_catalogs.json",
        "reports/metrics/ingest_catalogs.json",
    ]  # fmt: skip
    assert not (workdir / "data/raw/catalogs/k2.parquet").exists()
    assert summary["catalogs"]["k2"] == {"status": "unavailable", "reason": K2_SAMPLE_NOTE}
    assert summary["objects"]["rows"] == 12
    assert summary["objects"]["linked_entries"] == {"koi": 8, "toi": 4}
    assert summary["objects"]["lightcurve_objects_unlinked"] == {"KIC": 1, "TIC": 0, "EPIC": 6}
    run(params)
    assert _hashes(workdir) == first
    meta = read_metadata(workdir / "data/raw/catalogs/objects.parquet")
    lc_hash = hashlib.sha256(
        (workdir / "data/raw/tess/lightcurves.parquet").read_bytes()
    ).hexdigest()
    assert meta["provenance"]["inputs"]["data/raw/tess/lightcurves.parquet"] == lc_hash
    toi_meta = read_metadata(workdir / "data/raw/catalogs/toi.parquet")
    assert toi_meta["units"]["pl_orbper"] == "d" and toi_meta["units"]["pl_rade"] == "R_earth"
    assert toi_meta["provenance"]["inputs"] == {
        "data/sample/catalogs/toi.csv": hashlib.sha256(
            (SAMPLE / "catalogs/toi.csv").read_bytes()
        ).hexdigest()
    }
    field = pq.read_schema(workdir / "data/raw/catalogs/toi.parquet").field("pl_orbper")
    assert field.metadata[b"archive_unit"] == b"days"


def test_stage_limit_dry_run_and_missing_inputs(workdir) -> None:
    params = compose(root=ROOT)
    dry = run(params, dry_run=True, limit=3)
    assert dry["catalogs"]["toi"]["rows"] == 3 and dry["dry_run"] is True
    assert not (workdir / "data/raw/catalogs").exists()
    with pytest.raises(ConfigError, match=r"--limit 0: expected a positive number"):
        run(params, limit=0)
    (workdir / "data/raw/tess/lightcurves.parquet").unlink()
    with pytest.raises(MissingInputError, match=r"lightcurves.parquet: .*dvc repro ingest_tess"):
        run(params)
    moved = compose(["catalogs.sample.toi=data/sample/catalogs/nope.csv"], root=ROOT)
    with pytest.raises(MissingInputError, match=r"nope.csv: catalogs.sample.toi not found"):
        run(moved)
    assert not (workdir / "data/raw/catalogs").exists()
