"""The MAST Portal client against a real HTTP server on loopback (pytest-httpserver).

The server replays the REAL recorded answers of data/sample/mast (their envelope: status, msg,
fields, data, paging), cut into pages when the client asks for small pages, and serves a REAL
light-curve FITS (data/sample/tess) as the download. Faults: 500, 429 + Retry-After, read
timeouts, a truncated download, HTML where JSON was expected, status ERROR and EXECUTING.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from urllib.parse import parse_qs

import pyarrow.parquet as pq
import pytest
import yaml
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from astropipe.errors import ServiceError, ServiceResponseError
from astropipe.mast.config import MastClientConfig, MastQuery
from astropipe.mast.envelope import parse_envelope, rows_to_table
from astropipe.mast.stage import run
from astropipe.provenance import sha256_file
from astropipe.sources.mast import MastClient, load_mast_token, sort_observations

ROOT = Path(__file__).resolve().parents[1]
MAST = ROOT / "data/sample/mast"
FITS = ROOT / "data/sample/tess/test-lc-tess-pimen-100-cadences.fits"
INVOKE = "/api/v0/invoke"
DOWNLOAD = "/api/v0.1/Download/file"
URI = "mast:TESS/product/tess2018206045859-s0001-0000000261136679-0120-s_lc.fits"
TOKEN = "mAsT-t0ken-do-not-leak-3c9e"


def recorded(name: str) -> dict:
    return json.loads((MAST / name).read_text())


def page_of(doc: dict, page: int, size: int) -> dict:
    """The recorded answer cut to one page, with MAST's paging object."""
    rows = doc["data"][(page - 1) * size : page * size]
    total = len(doc["data"])
    paging = {"page": page, "pageSize": size, "pagesFiltered": -(-total // size),
              "rows": len(rows), "rowsFiltered": total, "rowsTotal": total}  # fmt: skip
    return {**doc, "data": rows, "paging": paging}


def request_of(req: Request) -> dict:
    return json.loads(parse_qs(req.get_data(as_text=True))["request"][0])


def json_response(doc: dict, **kw) -> Response:
    return Response(json.dumps(doc), content_type="application/json", **kw)


class Replay:
    """A handler answering invoke requests from recorded files; records what it was sent."""

    def __init__(self, answers: dict[str, str]):
        self.answers = {k: recorded(v) for k, v in answers.items()}
        self.seen: list[dict] = []
        self.headers: list[dict] = []

    def __call__(self, req: Request) -> Response:
        body = request_of(req)
        self.seen.append(body)
        self.headers.append(dict(req.headers))
        doc = self.answers[body["service"]]
        return json_response(page_of(doc, body["page"], body["pagesize"]))


def client_cfg(server: HTTPServer, **kw) -> MastClientConfig:
    base = dict(url=server.url_for(INVOKE), download_url=server.url_for(DOWNLOAD),
                pagesize=5, products_batch=2, timeout=[2.0, 2.0], retries=2,
                backoff_factor=0.01, poll_interval=0.01, max_polls=3, deadline=20.0,
                token_env=["ASTROPIPE_TEST_NO_SUCH_TOKEN"])  # fmt: skip
    base.update(kw)
    return MastClientConfig(**base)


QUERY = MastQuery(target_name=["261136679"], sequence_number=[1])


@pytest.fixture(autouse=True)
def _no_real_tokens(monkeypatch):
    for name in ("MAST_API_TOKEN", "TESS_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)


# --- paging, products, downloads --------------------------------------------------------------


def test_paging_until_rows_total(httpserver):
    replay = Replay({"Mast.Caom.Filtered": "caom.json"})
    httpserver.expect_request(INVOKE, method="POST").respond_with_handler(replay)
    result = MastClient(client_cfg(httpserver)).observations(QUERY)
    assert [r["page"] for r in replay.seen] == [1, 2, 3, 4]  # 19 rows, 5 a page
    assert {r["service"] for r in replay.seen} == {"Mast.Caom.Filtered"}
    assert replay.seen[0]["params"]["filters"][-1] == {
        "paramName": "sequence_number", "values": ["1"]}  # fmt: skip
    doc = recorded("caom.json")
    whole = sort_observations(rows_to_table(
        parse_envelope((MAST / "caom.json").read_bytes(), where="x").fields, doc["data"],
        where="x"))  # fmt: skip
    assert result.table.equals(whole)
    assert result.table.num_rows == 19
    assert list(result.responses) == [f"Mast.Caom.Filtered page {n}" for n in (1, 2, 3, 4)]


def test_a_short_page_before_rows_total_is_refused(httpserver):
    doc = recorded("caom.json")

    def handler(req: Request) -> Response:
        page = request_of(req)["page"]
        out = page_of(doc, page, 5)
        if page == 2:
            out["data"], out["paging"]["rows"] = [], 0
        return json_response(out)

    httpserver.expect_request(INVOKE).respond_with_handler(handler)
    with pytest.raises(ServiceResponseError, match="an empty page after 5 of paging.rowsTotal=19"):
        MastClient(client_cfg(httpserver)).observations(QUERY)


def test_products_are_batched_by_obsid(httpserver):
    replay = Replay({"Mast.Caom.Products": "products.json"})
    httpserver.expect_request(INVOKE).respond_with_handler(replay)
    result = MastClient(client_cfg(httpserver, pagesize=50)).products(["1", "2", "3"])
    assert [r["params"]["obsid"] for r in replay.seen] == ["1,2", "3"]
    # both batches answered the same 22 recorded rows: kept once per (obsID, dataURI)
    assert result.table.num_rows == 22
    assert result.table.column("obsID").to_pylist()[0] == "2003738726"


def test_download_of_a_real_light_curve_then_cached(httpserver, tmp_path):
    httpserver.expect_oneshot_request(DOWNLOAD, query_string={"uri": URI}).respond_with_data(
        FITS.read_bytes(), content_type="application/octet-stream"
    )
    client = MastClient(client_cfg(httpserver))
    path, sha, cached = client.download(URI, tmp_path, size=FITS.stat().st_size)
    assert not cached and sha == sha256_file(FITS) and path.read_bytes() == FITS.read_bytes()
    assert path == tmp_path.resolve() / "TESS/product" / URI.rsplit("/", 1)[1]
    again = client.download(URI, tmp_path, size=FITS.stat().st_size)  # no second request
    assert again == (path, sha, True) and len(httpserver.log) == 1


def test_download_size_differs_from_listing(httpserver, tmp_path):
    httpserver.expect_request(DOWNLOAD).respond_with_data(FITS.read_bytes())
    with pytest.raises(ServiceResponseError, match="40320 bytes arrived but the product listing"):
        MastClient(client_cfg(httpserver)).download(URI, tmp_path, size=1)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_truncated_download_leaves_nothing(httpserver, tmp_path):
    body = FITS.read_bytes()
    cut = Response(body[:10000], content_type="application/octet-stream")
    cut.headers["Content-Length"] = str(len(body))
    cut.automatically_set_content_length = False
    httpserver.expect_request(DOWNLOAD).respond_with_response(cut)
    expected = f"truncated after 10000 bytes of the {len(body)}"
    with pytest.raises(ServiceResponseError, match=expected):
        MastClient(client_cfg(httpserver, retries=0)).download(URI, tmp_path)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


# --- faults ------------------------------------------------------------------------------------


def test_500_then_success(httpserver):
    httpserver.expect_oneshot_request(INVOKE).respond_with_data("oops", status=500)
    httpserver.expect_request(INVOKE).respond_with_handler(
        Replay({"Mast.Caom.Filtered": "advSearch.json"}))  # fmt: skip
    result = MastClient(client_cfg(httpserver)).observations(QUERY)
    assert result.table.num_rows == 3 and len(httpserver.log) == 2


def test_persistent_500_names_the_service_and_page(httpserver):
    httpserver.expect_request(INVOKE).respond_with_data("oops", status=500)
    with pytest.raises(ServiceError, match=r"^Mast.Caom.Filtered page 1: http://.*HTTP 500") as e:
        MastClient(client_cfg(httpserver, retries=1)).observations(QUERY)
    assert e.value.status == 500


def test_429_with_retry_after_is_waited_for(httpserver, caplog):
    httpserver.expect_oneshot_request(INVOKE).respond_with_data(
        "slow down", status=429, headers={"Retry-After": "1"})  # fmt: skip
    httpserver.expect_request(INVOKE).respond_with_handler(
        Replay({"Mast.Caom.Filtered": "advSearch.json"}))  # fmt: skip
    caplog.set_level(logging.INFO)
    start = time.monotonic()
    result = MastClient(client_cfg(httpserver)).observations(QUERY)
    assert time.monotonic() - start >= 1.0
    assert result.table.num_rows == 3
    assert "waiting 1 s (Retry-After) before retry 1" in caplog.text


def test_read_timeout_is_retried_then_reported(httpserver):
    def slow(req: Request) -> Response:
        time.sleep(0.8)
        return json_response(recorded("advSearch.json"))

    httpserver.expect_request(INVOKE).respond_with_handler(slow)
    cfg = client_cfg(httpserver, timeout=[1.0, 0.3], retries=1)
    with pytest.raises(ServiceError, match=r"Mast.Caom.Filtered page 1: .*ReadTimeoutError") as e:
        MastClient(cfg).observations(QUERY)
    assert "no usable answer after 1 retries" in str(e.value)


@pytest.mark.parametrize("ctype", ["text/html", "application/json"])
def test_html_where_json_was_expected(httpserver, ctype):
    page = "<!DOCTYPE html><html><head><title>MAST is down for maintenance</title></head></html>"
    httpserver.expect_request(INVOKE).respond_with_data(page, content_type=ctype)
    with pytest.raises(ServiceResponseError, match=r"^Mast.Caom.Filtered page 1: .*HTML page"):
        MastClient(client_cfg(httpserver)).observations(QUERY)


def test_status_error_envelope(httpserver):
    error = {"status": "ERROR", "msg": "Invalid filter: sequence_numbr", "data": [],
             "fields": [], "paging": {}}  # fmt: skip
    httpserver.expect_request(INVOKE).respond_with_json(error)
    with pytest.raises(ServiceResponseError) as err:
        MastClient(client_cfg(httpserver)).observations(QUERY)
    msg = str(err.value)
    assert "Mast.Caom.Filtered page 1" in msg
    assert "MAST answered status ERROR: 'Invalid filter: sequence_numbr'" in msg


def test_executing_is_polled_until_complete(httpserver):
    httpserver.expect_oneshot_request(INVOKE).respond_with_json({"status": "EXECUTING", "msg": ""})
    replay = Replay({"Mast.Caom.Filtered": "advSearch.json"})
    httpserver.expect_request(INVOKE).respond_with_handler(replay)
    result = MastClient(client_cfg(httpserver)).observations(QUERY)
    assert result.table.num_rows == 3 and len(httpserver.log) == 2
    assert replay.seen[0]["page"] == 1  # the same request, sent again


def test_executing_forever_gives_up(httpserver):
    httpserver.expect_request(INVOKE).respond_with_json({"status": "EXECUTING", "msg": ""})
    with pytest.raises(ServiceError, match="still EXECUTING after 3 polls"):
        MastClient(client_cfg(httpserver)).observations(QUERY)
    assert len(httpserver.log) == 3


# --- the token -------------------------------------------------------------------------------


def test_token_reaches_the_server_and_nothing_else(httpserver, tmp_path, monkeypatch, caplog):
    """MAST_API_TOKEN travels as 'Authorization: token ...' and appears in no output, log line,
    report or error message; TESS_API_TOKEN is the fallback."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAST_API_TOKEN", TOKEN)
    replay = Replay({"Mast.Caom.Filtered": "advSearch.json",
                     "Mast.Caom.Products": "products.json"})  # fmt: skip
    httpserver.expect_request(INVOKE).respond_with_handler(replay)
    params = {"mast": yaml.safe_load((ROOT / "conf/mast/default.yaml").read_text())}
    params["mast"]["source"] = "live"
    params["mast"]["client"].update(
        url=httpserver.url_for(INVOKE), download_url=httpserver.url_for(DOWNLOAD),
        retries=1, backoff_factor=0.01)  # fmt: skip
    caplog.set_level(logging.DEBUG)
    summary = run(params)
    assert summary["observations"] == 3 and summary["products"] == 22
    assert {h.get("Authorization") for h in replay.headers} == {f"token {TOKEN}"}
    # the token is in no request body either
    assert not any(TOKEN in json.dumps(r) for r in replay.seen)
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert TOKEN.encode() not in written and written
    assert TOKEN not in caplog.text
    obs = pq.read_table("data/raw/mast/observations.parquet")
    assert obs.column("obs_id").to_pylist() == ["O6AU01MSQ", "O6AU01MTQ", "O6AU01MUQ"]

    # a server echoing the token in an error page: scrubbed from the message
    httpserver.clear()
    echo = f"<html><head><title>bad token {TOKEN}</title></head></html>"
    httpserver.expect_request(INVOKE).respond_with_data(echo, content_type="text/html")
    with pytest.raises(ServiceResponseError) as err:
        run(params)
    assert TOKEN not in str(err.value) and "***" in str(err.value)
    assert TOKEN not in caplog.text

    monkeypatch.delenv("MAST_API_TOKEN")
    monkeypatch.setenv("TESS_API_TOKEN", "other-tess-token")
    assert load_mast_token(["MAST_API_TOKEN", "TESS_API_TOKEN"]) == "other-tess-token"


def test_token_from_dotenv(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"TESS_API_TOKEN={TOKEN}\n")
    assert load_mast_token(["MAST_API_TOKEN", "TESS_API_TOKEN"]) == TOKEN
    assert load_mast_token(["MAST_API_TOKEN"]) is None
