"""The MAST invoke envelope and its typed fields, on the real recorded answers in data/sample/mast;
and the ingest_mast stage in sample mode (offline)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from astropipe.errors import ConfigError, InputFileError, ServiceResponseError
from astropipe.io.tables import read_metadata
from astropipe.mast.config import MastConfig, MastQuery
from astropipe.mast.envelope import concat_tables, parse_envelope, rows_to_table
from astropipe.mast.stage import run
from astropipe.provenance import sha256_file
from astropipe.sources.mast import (
    ProductFilter,
    cache_path,
    filter_products,
    observation_request,
    sort_observations,
)

ROOT = Path(__file__).resolve().parents[1]
MAST = ROOT / "data/sample/mast"


def load(name: str) -> pa.Table:
    page = parse_envelope((MAST / name).read_bytes(), where=name)
    return rows_to_table(page.fields, page.rows, where=name)


def test_sample_files_match_their_checksums():
    for line in (MAST / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert sha256_file(MAST / name) == digest, name


def test_filtered_answer_has_the_declared_types_and_real_values():
    t = load("advSearch.json")
    assert t.num_rows == 3
    assert t.schema.field("calib_level").type == pa.int64()
    assert t.schema.field("s_ra").type == pa.float64()
    assert t.schema.field("obs_id").type == pa.string()
    # declared "string", sent as a JSON integer: kept as its decimal text
    assert t.schema.field("obsid").type == pa.string()
    assert t.column("obsid").to_pylist() == ["2003520266", "2003520267", "2003520268"]
    assert t.column("obs_id").to_pylist()[0] == "O6AU01MSQ"
    assert t.column("s_ra")[0].as_py() == 341.7067159883
    assert t.column("target_name").to_pylist() == ["EV-LAC"] * 3
    assert t.schema.field("s_ra").metadata == {b"mast_type": b"float"}


def test_float_columns_take_json_integers_and_nulls():
    t = load("advSearchPos.json")
    exptime = t.column("t_exptime").to_pylist()
    assert exptime[0] == 184.0 and isinstance(exptime[0], float)
    assert t.column("proposal_pi").null_count == 8  # 4 of the 12 GALEX rows name a PI
    assert t.schema.field("distance").type == pa.float64()


def test_products_answer_and_boolean_nulls():
    t = load("products.json")
    assert t.num_rows == 22
    assert t.schema.field("size").type == pa.int64()
    assert t.schema.field("_selected_").type == pa.bool_()
    assert t.column("_selected_").null_count == 22
    first = {k: t.column(k)[0].as_py() for k in ("dataURI", "productFilename", "size", "obsID")}
    assert first == {
        "dataURI": "mast:HST/product/u9o40504m_c3m.fits",
        "productFilename": "u9o40504m_c3m.fits",
        "size": 207360,
        "obsID": "2003738726",
    }


def test_galex_planes_share_an_obsid_and_are_all_kept():
    """Regression: deduplicating on obsid alone dropped 6 of the 12 GALEX rows (FUV and NUV
    planes of one observation share an obsid; objID tells them apart)."""
    t = sort_observations(load("advSearchPos.json"))
    assert t.num_rows == 12
    assert len(set(t.column("obsid").to_pylist())) == 6
    # the same rows twice (two queries answering the same planes) are kept once
    twice = sort_observations(concat_tables([load("advSearchPos.json")] * 2, where="x"))
    assert twice.num_rows == 12


def test_union_of_different_field_lists():
    t = concat_tables([load("advSearch.json"), load("advSearchPos.json")], where="x")
    assert t.num_rows == 15
    assert "distance" in t.column_names  # only the Position answer has it
    assert t.column("distance").null_count == 3


def test_conflicting_types_between_answers_are_refused():
    a = pa.table({"x": pa.array([1], pa.int64())})
    b = pa.table({"x": pa.array(["1"], pa.string())})
    with pytest.raises(ServiceResponseError, match="'x' is int64 in one answer and string"):
        concat_tables([a, b], where="q")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"<!DOCTYPE html><html><title>Maintenance</title></html>", "got an HTML page"),
        (b'{"status": "COMPLETE", "data": [', "expected JSON, got 32 bytes"),
        (b"[1, 2]", "a JSON list without `status`"),
        (b'{"status": "ERROR", "msg": "Unknown service Mast.Caom.Filterd"}',
         "MAST answered status ERROR: 'Unknown service Mast.Caom.Filterd'"),
        (b'{"status": "DONE"}', "unknown status 'DONE'"),
        (b'{"status": "COMPLETE", "fields": {}, "data": []}', "`fields` is not a list"),
        (b'{"status": "COMPLETE", "fields": [], "data": {}}', "`data` is not a list"),
        (b'{"status": "COMPLETE", "fields": [], "data": [], "paging": {"rowsTotal": -1}}',
         "rowsTotal is -1"),
    ],
)  # fmt: skip
def test_bad_envelopes_are_one_line_errors(body, match):
    with pytest.raises(ServiceResponseError, match=match) as err:
        parse_envelope(body, where="Mast.Caom.Filtered page 1")
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("Mast.Caom.Filtered page 1: ")


def test_executing_is_not_an_error():
    assert parse_envelope(b'{"status": "EXECUTING", "msg": ""}', where="x").status == "EXECUTING"


@pytest.mark.parametrize(
    ("mast_type", "value", "match"),
    [
        ("int", "abc", r"field 'v' \(declared int\) row 1: 'abc' is not a int"),
        ("int", 1.5, "1.5 is not a int"),
        ("float", "x", "'x' is not a float"),
        ("float", True, "True is not a float"),
        ("boolean", 2, "2 is not a boolean"),
        ("string", {"a": 1}, "is not a string"),
        ("date", 5, "5 is not a date"),
    ],
)
def test_values_that_do_not_fit_their_declared_type(mast_type, value, match):
    rows = [{"v": None}, {"v": value}]
    with pytest.raises(ServiceResponseError, match=match):
        rows_to_table([("v", mast_type)], rows, where="ans")


def test_unknown_field_type_and_undeclared_keys():
    with pytest.raises(ServiceResponseError, match="type 'geometry', which astropipe does not"):
        rows_to_table([("v", "geometry")], [], where="ans")
    with pytest.raises(ServiceResponseError, match=r"row 0 has keys \['w'\]"):
        rows_to_table([("v", "int")], [{"v": 1, "w": 2}], where="ans")


def test_dates_and_numeric_text():
    t = rows_to_table(
        [("d", "date"), ("f", "float"), ("b", "boolean")],
        [{"d": "2019-07-10 12:00:00", "f": "NaN", "b": "true"}, {"d": "2018-08-22T00:00:00Z"}],
        where="ans",
    )
    assert str(t.column("d")[0].as_py()) == "2019-07-10 12:00:00"
    assert str(t.column("d")[1].as_py()) == "2018-08-22 00:00:00"
    assert math.isnan(t.column("f")[0].as_py()) and t.column("b").to_pylist() == [True, None]


def test_product_filter_to_light_curves():
    rows = [
        {"productFilename": "tess2018206045859-s0001-0000000261136679-0120-s_lc.fits",
         "productSubGroupDescription": "LC", "productType": "SCIENCE"},
        {"productFilename": "tess2018206045859-s0001-0000000261136679-0120-s_tp.fits",
         "productSubGroupDescription": "TP", "productType": "SCIENCE"},
        {"productFilename": "tess2018206045859-s0001-0000000261136679-0120-s_lc.fits.gz",
         "productSubGroupDescription": "LC", "productType": "AUXILIARY"},
        {"productFilename": None, "productSubGroupDescription": None, "productType": None},
    ]  # fmt: skip
    t = pa.Table.from_pylist(rows)
    rule = ProductFilter(subgroups=["LC"], types=["SCIENCE"], suffixes=["_lc.fits"])
    assert filter_products(t, rule).column("productFilename").to_pylist() == [
        rows[0]["productFilename"]
    ]
    assert filter_products(t, ProductFilter()).num_rows == 4
    real = filter_products(load("products.json"), ProductFilter(types=["SCIENCE"]))
    assert real.num_rows == 7


def test_cache_paths_never_leave_the_cache(tmp_path):
    uri = "mast:TESS/product/tess2018206045859-s0001-0000000261136679-0120-s_lc.fits"
    assert cache_path(tmp_path, uri) == tmp_path.resolve() / uri[5:]
    for bad in ("mast:../../etc/passwd", "mast:TESS//x.fits", "mast:/abs.fits",
                "http://x/y.fits", "mast:TESS/product/a b.fits", "mast:TESS/./x.fits",
                "mast:TESS/product/x_lc.fits\n"):  # fmt: skip  (re's `$` matched before a \n)
        with pytest.raises(ServiceResponseError):
            cache_path(tmp_path, bad)


def test_requests_are_built_as_mast_documents():
    q = MastQuery(target_name=["261136679"], sequence_number=[1, 4], t_min=[58300, 58400.5])
    req = observation_request(q, pagesize=100, page=2)
    assert req["service"] == "Mast.Caom.Filtered" and req["page"] == 2
    assert req["params"]["filters"] == [
        {"paramName": "obs_collection", "values": ["TESS"]},
        {"paramName": "dataproduct_type", "values": ["timeseries"]},
        {"paramName": "target_name", "values": ["261136679"]},
        {"paramName": "sequence_number", "values": ["1", "4"]},
        {"paramName": "t_min", "values": [{"min": 58300, "max": 58400.5}]},
    ]
    cone = observation_request(MastQuery(target_name=[], ra=84.29, dec=-80.47, radius=0.01),
                               pagesize=10)  # fmt: skip
    assert cone["service"] == "Mast.Caom.Filtered.Position"
    assert cone["params"]["position"] == "84.29, -80.47, 0.01"


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ({"target_name": []}, "the query is unbounded"),
        ({"ra": 10.0}, "give all of ra, dec and radius"),
        ({"ra": 10.0, "dec": 5.0, "radius": 3.0}, "larger than 1 deg"),
        ({"t_min": [2, 1]}, r"mast.query.t_min: expected \[lo, hi\]"),
        ({"sequence_number": [-1]}, r"mast.query.sequence_number\[0\]: -1 is not valid"),
        ({"target": ["x"]}, r"unknown key\(s\) \['target'\]"),
    ],
)
def test_bad_live_queries_are_refused_before_any_request(query, match):
    with pytest.raises(ConfigError, match=match):
        MastConfig.from_params({"mast": {"source": "live", "query": query}})


# --- the stage in sample mode ---------------------------------------------------------------


@pytest.fixture()
def params() -> dict:
    return {"mast": yaml.safe_load((ROOT / "conf/mast/default.yaml").read_text())}


def test_sample_run_writes_typed_sorted_tables_twice_identically(params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(MAST, tmp_path / "data/sample/mast")
    summary = run(params)
    assert summary["observations"] == 15 and summary["products"] == 22
    assert summary["observations_by_collection"] == {"GALEX": 12, "HST": 3}
    obs = pq.read_table("data/raw/mast/observations.parquet")
    assert obs.column("obs_collection").to_pylist() == ["GALEX"] * 12 + ["HST"] * 3
    assert obs.column("obs_id").to_pylist()[-3:] == ["O6AU01MSQ", "O6AU01MTQ", "O6AU01MUQ"]
    assert obs.schema.field("calib_level").type == pa.int64()
    meta = read_metadata("data/raw/mast/observations.parquet")
    assert meta["units"]["s_ra"] == "deg"
    assert sorted(meta["provenance"]["inputs"]) == [
        "data/sample/mast/advSearch.json",
        "data/sample/mast/advSearchPos.json",
        "data/sample/mast/products.json",
    ]
    first = {p: Path(p).read_bytes() for p in (
        "data/raw/mast/observations.parquet", "data/raw/mast/products.parquet",
        "reports/metrics/ingest_mast.json", "reports/ingest_mast.json")}  # fmt: skip
    run(params)
    for p, content in first.items():
        assert Path(p).read_bytes() == content, p
    assert str(tmp_path) not in "".join(c.decode("latin-1") for c in first.values())


def test_sample_run_quarantines_a_bad_answer_and_goes_on(params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"status": "ERROR", "msg": "Request timed out"}))
    params["mast"]["sample"]["observations"] = [str(MAST / "advSearch.json"), str(bad)]
    params["mast"]["sample"]["products"] = []
    summary = run(params)
    assert summary["observations"] == 3 and summary["quarantined"] == 1
    report = json.loads(Path("reports/ingest_mast.json").read_text())
    assert "status ERROR: 'Request timed out'" in report["quarantined"][0]["reason"]
    products = pq.read_table("data/raw/mast/products.parquet")
    assert products.num_rows == 0 and "dataURI" in products.column_names


def test_sample_run_with_nothing_readable_fails_and_writes_nothing(params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("<html><body>Service unavailable</body></html>")
    params["mast"]["sample"]["observations"] = [str(bad)]
    with pytest.raises(InputFileError, match="0 of 1 recorded answers readable"):
        run(params)
    assert not Path("data/raw/mast").exists()


def test_limit_and_dry_run(params, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    dry = run(params, dry_run=True, limit=4)
    assert dry["dry_run"] and dry["observations"] == 4
    with pytest.raises(ConfigError, match="--limit 0"):
        run(params, limit=0)
