"""ingest_tess live mode end to end on loopback: Filtered → Products → Download → rows.

No recorded TESS ``Mast.Caom.Filtered``/``Products`` answer exists (data/sample/mast holds
HST/GALEX ones), so the server answers with the RECORDED envelopes and field lists
(advSearch.json, products.json) carrying rows that describe the real pi Men sector-1 light
curve in data/sample/tess (obs_id, target, coordinates and file size from its FITS header and
file; the obsid number is invented). The download is that real FITS file, byte for byte.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import pyarrow.parquet as pq
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from astropipe.config import compose
from astropipe.errors import ConfigError, InputFileError
from astropipe.provenance import sha256_file
from astropipe.tess import read_lightcurve_fits
from astropipe.tess.live import downsample, keep_every
from astropipe.tess.reader import ReadResult
from astropipe.tess.stage import run

ROOT = Path(__file__).resolve().parents[1]
FITS = ROOT / "data/sample/tess/test-lc-tess-pimen-100-cadences.fits"
NAME = "tess2018206045859-s0001-0000000261136679-0120-s"
URI = f"mast:TESS/product/{NAME}_lc.fits"
OBSID = "90000001"  # invented: MAST's real obsid is not in the recordings
INVOKE = "/api/v0/invoke"
DOWNLOAD = "/api/v0.1/Download/file"


def _recorded(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "data/sample/mast" / name).read_text())


def observations_answer() -> dict[str, Any]:
    doc = _recorded("advSearch.json")
    doc["fields"] = doc["fields"] + [{"name": "sequence_number", "type": "int"}]
    row = {f["name"]: None for f in doc["fields"]}
    row.update(dataproduct_type="timeseries", calib_level=3, obs_collection="TESS",
               obs_id=NAME, target_name="261136679", s_ra=84.2911879979852,
               s_dec=-80.4691197969941, t_min=58324.79402, t_max=58352.67676,
               instrument_name="Photometer", project="TESS", obsid=int(OBSID),
               sequence_number=1)  # fmt: skip
    doc["data"] = [row]
    doc["paging"] = {**doc["paging"], "rows": 1, "rowsFiltered": 1, "rowsTotal": 1}
    return doc


def products_answer() -> dict[str, Any]:
    doc = _recorded("products.json")
    base = {f["name"]: None for f in doc["fields"]}
    common = dict(obsID=int(OBSID), obs_collection="TESS", dataproduct_type="timeseries",
                  obs_id=NAME, project="TESS", type="S")  # fmt: skip
    doc["data"] = [
        {**base, **common, "dataURI": URI, "productFilename": f"{NAME}_lc.fits",
         "productType": "SCIENCE", "productSubGroupDescription": "LC",
         "description": "Light curves", "size": FITS.stat().st_size},
        {**base, **common, "dataURI": f"mast:TESS/product/{NAME}_tp.fits",
         "productFilename": f"{NAME}_tp.fits", "productType": "SCIENCE",
         "productSubGroupDescription": "TP", "description": "Target pixel files",
         "size": 1},
    ]  # fmt: skip
    doc["paging"] = {**doc["paging"], "rows": 2, "rowsFiltered": 2, "rowsTotal": 2}
    return doc


class Mast:
    """The three MAST endpoints on one loopback server; records what was asked."""

    def __init__(self, server: HTTPServer):
        self.calls: list[str] = []
        server.expect_request(INVOKE, method="POST").respond_with_handler(self.invoke)
        server.expect_request(DOWNLOAD).respond_with_handler(self.download)

    def invoke(self, req: Request) -> Response:
        body = json.loads(parse_qs(req.get_data(as_text=True))["request"][0])
        self.calls.append(body["service"])
        if body["service"] == "Mast.Caom.Products":
            assert body["params"] == {"obsid": OBSID}
            doc = products_answer()
        else:
            filters = {f["paramName"]: f["values"] for f in body["params"]["filters"]}
            assert filters["target_name"] == ["261136679"] and filters["sequence_number"] == ["1"]
            doc = observations_answer()
        return Response(json.dumps(doc), content_type="application/json")

    def download(self, req: Request) -> Response:
        self.calls.append(f"download {req.args['uri']}")
        assert req.args["uri"] == URI  # the _tp.fits product was filtered out
        return Response(FITS.read_bytes(), content_type="application/octet-stream")


@pytest.fixture()
def live_params(httpserver: HTTPServer, tmp_path: Path, monkeypatch) -> dict[str, Any]:
    monkeypatch.chdir(tmp_path)
    params = copy.deepcopy(compose(root=ROOT))
    params["tess"]["source"] = "live"
    params["tess"]["live"]["sectors"] = [1]
    params["mast"]["client"].update(
        url=httpserver.url_for(INVOKE), download_url=httpserver.url_for(DOWNLOAD),
        retries=1, backoff_factor=0.01, timeout=[2.0, 5.0])  # fmt: skip
    return params


def test_live_end_to_end_then_cached(httpserver, live_params, tmp_path):
    mast = Mast(httpserver)
    metrics = run(live_params)
    assert mast.calls == ["Mast.Caom.Filtered", "Mast.Caom.Products", f"download {URI}"]
    assert metrics["source"] == "live" and metrics["files_read"] == 1 and metrics["rows"] == 100
    cached = tmp_path / "data/cache/mast/TESS/product" / f"{NAME}_lc.fits"
    assert sha256_file(cached) == sha256_file(FITS)
    kept = tmp_path / "data/raw/tess/fits/live/TESS/product" / f"{NAME}_lc.fits"  # dataURI folders
    assert kept.read_bytes() == FITS.read_bytes()
    table = pq.read_table(tmp_path / "data/raw/tess/lightcurves.parquet")
    direct = read_lightcurve_fits(FITS)
    assert table.column("mjd").to_pylist() == direct.column("mjd").to_pylist()
    assert np.array_equal(table.column("flux").to_numpy(), direct.column("flux").to_numpy(),
                          equal_nan=True)  # fmt: skip
    assert set(table.column("object_id").to_pylist()) == {"TIC 261136679"}
    first = (tmp_path / "data/raw/tess/lightcurves.parquet").read_bytes()
    # second run: the same two queries, no download, the same bytes
    run(live_params)
    assert mast.calls[3:] == ["Mast.Caom.Filtered", "Mast.Caom.Products"]
    assert (tmp_path / "data/raw/tess/lightcurves.parquet").read_bytes() == first


def test_live_max_points_keeps_every_kth_cadence(httpserver, live_params, tmp_path):
    Mast(httpserver)
    live_params["tess"]["live"]["max_points"] = 30
    metrics = run(live_params)
    assert metrics["rows"] == 25  # k = ceil(100 / 30) = 4: rows 0, 4, ..., 96
    table = pq.read_table(tmp_path / "data/raw/tess/lightcurves.parquet")
    direct = read_lightcurve_fits(FITS).column("mjd").to_pylist()
    assert table.column("mjd").to_pylist() == direct[::4]
    report = json.loads((tmp_path / "reports/ingest_tess.json").read_text())
    assert report["read"][0]["rows_before_downsampling"] == 100


def test_live_limit_and_dry_run_send_nothing(httpserver, live_params, tmp_path):
    mast = Mast(httpserver)
    out = run(live_params, dry_run=True)
    assert mast.calls == [] and not (tmp_path / "data").exists()
    req = out["requests"]["observations"]
    assert req["service"] == "Mast.Caom.Filtered"
    assert {"paramName": "sequence_number", "values": ["1"]} in req["params"]["filters"]
    assert out["requests"]["downloads"].endswith("/api/v0.1/Download/file?uri=<dataURI>")


def test_live_nothing_matches(httpserver, live_params):
    empty = observations_answer()
    empty["data"], empty["paging"]["rowsTotal"], empty["paging"]["rows"] = [], 0, 0
    httpserver.expect_request(INVOKE).respond_with_json(empty)
    with pytest.raises(InputFileError, match="MAST has no observation for target_name"):
        run(live_params)
    assert not Path("data/raw").exists()


def test_live_query_must_be_bounded(live_params):
    live_params["tess"]["live"].update(target_name=[], sectors=[])
    with pytest.raises(ConfigError, match="tess.live: the query is unbounded"):
        run(live_params, dry_run=True)


def test_downsample_rule():
    assert [keep_every(n, 30) for n in (1, 30, 31, 60, 61, 100)] == [1, 1, 2, 2, 3, 4]
    t = read_lightcurve_fits(FITS)
    rec = {"file": "a", "rows": 100}
    res = ReadResult(table=t, files=[rec, {"file": "b", "rows": 0}])
    out = downsample(res, 100)
    assert out.table.num_rows == 100 and out.files[0] is rec
    for m in (1, 7, 33, 99):
        got = downsample(res, m)
        assert got.table.num_rows <= m
        assert got.table.column("mjd")[0] == t.column("mjd")[0]
