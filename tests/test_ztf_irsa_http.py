"""IRSA nph_light_curves client against a real HTTP server on loopback (pytest-httpserver).

The served CSV is in the documented nph_light_curves column layout, built from the REAL DR5
measurements in data/sample/ztf/irsa: hjd = hmjd + 2400000.5, mjd = the start-of-exposure
MJD, mag/magerr/catflags/clrcoeff as in the file, ra/dec = the object's position,
field/ccdid/qid from fieldid/rcid. Columns the bulk file does not have (expid, chi, sharp,
filefracday, limitmag, magzp, ...) are left empty rather than invented.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from astropipe.errors import ConfigError, ServiceError, ServiceResponseError
from astropipe.sources.http import download, get_text, load_token, make_session, safe_url
from astropipe.ztf.config import DrConfig, IrsaConfig
from astropipe.ztf.dr import DR_EXPTIME_S, hmjd_to_mjd, read_dr_lightcurves
from astropipe.ztf.irsa import (
    IRSA_COLUMNS,
    fetch_lightcurves,
    irsa_query_params,
    parse_lightcurve_csv,
)

SAMPLE = Path(__file__).resolve().parents[1] / "data/sample/ztf/irsa"
OIDS = (202116200000006, 202116200000014)  # 15 and 32 epochs, of which 1 and 5 have bit 15 set
TOKEN = "s3cr3t-T0KEN-do-not-leak-8f2a"
PATH = "/cgi-bin/ZTF/nph_light_curves"
BANDS = {1: "zg", 2: "zr", 3: "zi"}


def _service_rows(row: pd.Series) -> list[str]:
    hmjd = row["hmjd"].astype("float64")
    ra, dec = float(row["objra"]), float(row["objdec"])
    mjd = hmjd_to_mjd(hmjd, ra, dec, exptime_s=DR_EXPTIME_S)
    ccdid, qid = int(row["rcid"]) // 4 + 1, int(row["rcid"]) % 4 + 1
    out = []
    for i in range(len(hmjd)):
        values = {
            "oid": str(row["objectid"]),
            "hjd": repr(hmjd[i] + 2400000.5),
            "mjd": repr(float(mjd[i])),
            "mag": repr(float(row["mag"][i])),
            "magerr": repr(float(row["magerr"][i])),
            "catflags": str(int(row["catflags"][i])),
            "filtercode": BANDS[int(row["filterid"])],
            "ra": repr(ra),
            "dec": repr(dec),
            "field": str(int(row["fieldid"])),
            "ccdid": str(ccdid),
            "qid": str(qid),
            "clrcoeff": repr(float(row["clrcoeff"][i])),
        }
        out.append(",".join(values.get(c, "") for c in IRSA_COLUMNS))
    return out


@pytest.fixture(scope="module")
def dr_rows() -> pd.DataFrame:
    table = pq.read_table(SAMPLE / "DR5_field0202_example_tests.parquet").to_pandas()
    return table.set_index("objectid", drop=False)


def service_csv(dr_rows: pd.DataFrame, oids) -> str:
    lines = [",".join(IRSA_COLUMNS)]
    for oid in oids:
        lines += _service_rows(dr_rows.loc[oid])
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def dr_frame() -> pd.DataFrame:
    frame, _ = read_dr_lightcurves(DrConfig(path=str(SAMPLE)))
    return frame[frame["object_id"].isin([str(o) for o in OIDS])].reset_index(drop=True)


def cfg_for(server: HTTPServer, **kw) -> IrsaConfig:
    base = dict(
        url=server.url_for(PATH),
        ids=list(OIDS),
        filters=["zg", "zr"],
        timeout=[2.0, 5.0],
        retries=2,
        backoff_factor=0.01,
        bad_catflags_mask=32768,
    )
    base.update(kw)
    return IrsaConfig(**base)


def csv_response(body: str, **kw) -> Response:
    return Response(body, content_type="text/csv", **kw)


def expect_id(server: HTTPServer, oid: int, body: str, *, oneshot: bool = False):
    query = {"ID": str(oid), "BAD_CATFLAGS_MASK": "32768", "FORMAT": "CSV"}
    expect = server.expect_oneshot_request if oneshot else server.expect_request
    return expect(PATH, method="GET", query_string=query)


# --- the happy paths -------------------------------------------------------------------------


def test_query_params_for_ids_and_cone():
    ids = irsa_query_params(IrsaConfig(ids=[1, 2], mjd_range=[59800, 59820.5]))
    assert ids == [
        {"ID": "1", "TIME": "59800.0 59820.5", "BAD_CATFLAGS_MASK": "32768", "FORMAT": "CSV"},
        {"ID": "2", "TIME": "59800.0 59820.5", "BAD_CATFLAGS_MASK": "32768", "FORMAT": "CSV"},
    ]
    cone = irsa_query_params(
        IrsaConfig(ra=210.8023, dec=54.3489, radius=0.05, filters=["zg", "zr"])
    )
    assert cone == [
        {
            "POS": "CIRCLE 210.8023 54.3489 0.05",
            "BANDNAME": "g,r",
            "BAD_CATFLAGS_MASK": "32768",
            "FORMAT": "CSV",
        }
    ]
    with pytest.raises(ConfigError, match="0.1667"):
        irsa_query_params(IrsaConfig(ra=1.0, dec=2.0, radius=0.5))
    with pytest.raises(ConfigError, match="unbounded"):
        irsa_query_params(IrsaConfig())


def test_id_queries_reproduce_the_dr_values(httpserver, dr_rows, dr_frame):
    bodies = {oid: service_csv(dr_rows, [oid]) for oid in OIDS}
    for oid in OIDS:
        expect_id(httpserver, oid, bodies[oid]).respond_with_response(csv_response(bodies[oid]))
    frame, prov = fetch_lightcurves(cfg_for(httpserver))
    assert len(httpserver.log) == 2
    # The served rows include a catflags=32768 epoch; the client drops it, like the DR reader.
    assert len(frame) == len(dr_frame) == (15 - 1) + (32 - 5)
    assert set(frame["source"]) == {"irsa"}
    cols = ["object_id", "band", "mjd", "mag", "mag_err", "flags", "ra", "dec", "is_upper_limit"]
    pd.testing.assert_frame_equal(frame[cols], dr_frame[cols])
    assert prov["query"]["requests"] == irsa_query_params(cfg_for(httpserver))
    assert sorted(prov["responses"].values()) == sorted(
        hashlib.sha256(b.encode()).hexdigest() for b in bodies.values()
    )
    assert all(f"ID={oid}" in "".join(prov["responses"]) for oid in OIDS)


def test_cone_query_and_limit(httpserver, dr_rows, dr_frame):
    body = service_csv(dr_rows, OIDS)
    httpserver.expect_request(
        PATH,
        query_string={
            "POS": "CIRCLE 20.44 -27.65 0.01",
            "BANDNAME": "g,r",
            "TIME": "59000.0 60000.0",
            "BAD_CATFLAGS_MASK": "32768",
            "FORMAT": "CSV",
        },
    ).respond_with_response(csv_response(body))
    cfg = cfg_for(httpserver, ids=[], ra=20.44, dec=-27.65, radius=0.01, mjd_range=[59000, 60000])
    frame, _ = fetch_lightcurves(cfg, limit=5)
    pd.testing.assert_frame_equal(
        frame.drop(columns="source"), dr_frame.head(5).drop(columns="source")
    )


def test_limitmag_and_hex_catflags_are_parsed():
    header = ",".join(IRSA_COLUMNS)
    values = dict.fromkeys(IRSA_COLUMNS, "")
    values.update(oid="1", mjd="58202.5", mag="18.6", magerr="0.05", filtercode="zg", catflags="0")
    values.update(ra="10.0", dec="20.0", limitmag="20.25")
    ok = ",".join(values[c] for c in IRSA_COLUMNS)
    values.update(mjd="58203.5", catflags="0x8000")
    bad = ",".join(values[c] for c in IRSA_COLUMNS)
    frame = parse_lightcurve_csv(f"{header}\n{ok}\n{bad}\n", where="x", bad_catflags_mask=32768)
    assert len(frame) == 1 and frame.loc[0, "limiting_mag"] == 20.25 and frame.loc[0, "flags"] == 0


# --- faults ----------------------------------------------------------------------------------


def test_500_then_success_is_retried(httpserver, dr_rows, dr_frame):
    body = service_csv(dr_rows, OIDS[:1])
    expect_id(httpserver, OIDS[0], body, oneshot=True).respond_with_data("boom", status=500)
    expect_id(httpserver, OIDS[0], body).respond_with_response(csv_response(body))
    frame, _ = fetch_lightcurves(cfg_for(httpserver, ids=[OIDS[0]]))
    assert [e[1].status_code for e in httpserver.log] == [500, 200]
    assert len(frame) == 14


def test_429_retry_after_is_honoured(httpserver, dr_rows):
    body = service_csv(dr_rows, OIDS[:1])
    expect_id(httpserver, OIDS[0], body, oneshot=True).respond_with_data(
        "slow down", status=429, headers={"Retry-After": "1"}
    )
    expect_id(httpserver, OIDS[0], body).respond_with_response(csv_response(body))
    start = time.monotonic()
    frame, _ = fetch_lightcurves(cfg_for(httpserver, ids=[OIDS[0]], backoff_factor=0.0))
    elapsed = time.monotonic() - start
    assert [e[1].status_code for e in httpserver.log] == [429, 200]
    assert elapsed >= 1.0  # waited the Retry-After, not the (zero) backoff
    assert len(frame) == 14


def test_persistent_500_ends_in_service_error(httpserver):
    httpserver.expect_request(PATH).respond_with_data("down", status=503)
    with pytest.raises(ServiceError, match=r"HTTP 503 .*after retries"):
        fetch_lightcurves(cfg_for(httpserver, ids=[OIDS[0]], retries=2))
    assert len(httpserver.log) == 3  # first try + 2 retries


@pytest.mark.timeout(60)
def test_read_timeout_is_retried_then_service_error():
    release = threading.Event()
    calls = []

    def sleepy(request: Request) -> Response:
        calls.append(request.args.get("ID"))
        release.wait(10)
        return Response("late", content_type="text/csv")

    server = HTTPServer(threaded=True)  # a sleeping handler must not block the retry
    server.expect_request(PATH).respond_with_handler(sleepy)
    server.start()
    try:
        cfg = cfg_for(server, ids=[OIDS[0]], timeout=[1.0, 0.2], retries=1)
        with pytest.raises(ServiceError, match=r"no usable answer after 1 retries.*read=0.2s"):
            fetch_lightcurves(cfg)
        assert calls == [str(OIDS[0])] * 2
    finally:
        release.set()
        server.clear()
        if server.is_running():
            server.stop()


def test_html_error_page_is_refused(httpserver):
    page = "<!DOCTYPE html><html><head><title>IRSA - Error</title></head><body>oops</body></html>"
    httpserver.expect_request(PATH).respond_with_data(page, content_type="text/html")
    with pytest.raises(ServiceResponseError) as err:
        fetch_lightcurves(cfg_for(httpserver, ids=[OIDS[0]]))
    msg = str(err.value)
    assert "HTML page" in msg and "IRSA - Error" in msg and f"ID={OIDS[0]}" in msg
    assert "\n" not in msg


def test_html_page_served_as_csv_is_refused(httpserver):
    httpserver.expect_request(PATH).respond_with_data(
        "<html><body>x</body></html>", content_type="text/csv"
    )
    with pytest.raises(ServiceResponseError, match="HTML page"):
        fetch_lightcurves(cfg_for(httpserver, ids=[OIDS[0]]))


def test_content_length_mismatch_is_refused_and_nothing_written(httpserver, dr_rows, tmp_path):
    body = service_csv(dr_rows, OIDS[:1]).encode()
    cut = Response(body[: len(body) // 2], content_type="text/csv")
    cut.headers["Content-Length"] = str(len(body))
    cut.automatically_set_content_length = False
    httpserver.expect_request(PATH).respond_with_response(cut)
    with pytest.raises(ServiceResponseError, match="truncated") as err:
        fetch_lightcurves(cfg_for(httpserver, ids=[OIDS[0]]))
    assert str(len(body)) in str(err.value)
    # The streaming download leaves neither the file nor a temporary sibling.
    session = make_session(retries=0, backoff_factor=0)
    with pytest.raises(ServiceResponseError, match="truncated"):
        download(session, httpserver.url_for(PATH), tmp_path / "lc.csv", timeout=(2, 5))
    assert list(tmp_path.iterdir()) == []


def test_ragged_last_line_is_refused(httpserver, dr_rows):
    body = service_csv(dr_rows, OIDS[:1])
    cut = body[: body.rindex(",", 0, len(body) - 40)]  # a complete-looking but short last line
    httpserver.expect_request(PATH).respond_with_data(cut, content_type="text/csv")
    with pytest.raises(ServiceResponseError, match=r"last line: the body was cut short"):
        fetch_lightcurves(cfg_for(httpserver, ids=[OIDS[0]]))


@pytest.mark.parametrize(
    ("body", "ctype", "match"),
    [
        ("", "text/csv", "empty answer"),
        ('{"error": "bad ID"}', "text/plain", r"missing column\(s\)"),
        ("oid,mjd\n1,2\n", "text/csv", r"missing column\(s\) \['mag'"),
        ("a,b\n1,2\n", "application/json", "Content-Type 'application/json'"),
    ],
)
def test_empty_or_garbled_answers_are_refused(httpserver, body, ctype, match):
    httpserver.expect_request(PATH).respond_with_data(body, content_type=ctype)
    with pytest.raises(ServiceResponseError, match=match):
        fetch_lightcurves(cfg_for(httpserver, ids=[OIDS[0]]))


def test_header_only_answer_is_an_empty_light_curve(httpserver):
    httpserver.expect_request(PATH).respond_with_data(
        ",".join(IRSA_COLUMNS) + "\n", content_type="text/csv"
    )
    frame, _ = fetch_lightcurves(cfg_for(httpserver, ids=[OIDS[0]]))
    assert frame.empty


# --- the token -------------------------------------------------------------------------------


def test_token_only_in_the_authorization_header(httpserver, dr_rows, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("ZTF_API_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    body = service_csv(dr_rows, OIDS[:1])
    expect_id(httpserver, OIDS[0], body, oneshot=True).respond_with_data("down", status=500)
    expect_id(httpserver, OIDS[0], body).respond_with_response(csv_response(body))
    frame, prov = fetch_lightcurves(cfg_for(httpserver, ids=[OIDS[0]]))
    for request, _ in httpserver.log:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert TOKEN not in request.url
    out = tmp_path / "prov.json"
    out.write_text(json.dumps(prov) + frame.to_csv())
    assert TOKEN not in out.read_text()
    # A failing run: the error text carries the URL and status, never the token.
    httpserver.clear()
    httpserver.expect_request(PATH).respond_with_data("denied", status=401)
    with pytest.raises(ServiceError, match="HTTP 401") as err:
        fetch_lightcurves(cfg_for(httpserver, ids=[OIDS[0]]))
    assert TOKEN not in str(err.value)
    assert TOKEN not in caplog.text


def test_token_is_scrubbed_even_if_a_server_echoes_it(httpserver):
    session = make_session(retries=0, backoff_factor=0, token=TOKEN)
    page = f"<html><head><title>bad token {TOKEN}</title></head></html>"
    httpserver.expect_request("/x").respond_with_data(page, content_type="text/html")
    with pytest.raises(ServiceResponseError) as err:
        get_text(session, httpserver.url_for("/x"), timeout=(2, 5))
    assert TOKEN not in str(err.value) and "***" in str(err.value)


def test_token_from_dotenv_and_safe_url(tmp_path, monkeypatch):
    monkeypatch.delenv("ZTF_API_TOKEN", raising=False)
    (tmp_path / ".env").write_text(f"ZTF_API_TOKEN={TOKEN}\n")
    assert load_token("ZTF_API_TOKEN", dotenv_path=tmp_path / ".env") == TOKEN
    assert load_token("ZTF_API_TOKEN", dotenv_path=tmp_path / "missing") is None
    shown = safe_url("https://user:pw@host:8443/p?api_key=abc&ID=1", {"TIME": "1 2"})
    assert shown == "https://host:8443/p?api_key=%2A%2A%2A&ID=1&TIME=1+2"


def test_download_streams_to_the_final_name(httpserver, dr_rows, tmp_path):
    body = service_csv(dr_rows, OIDS).encode()
    httpserver.expect_request("/f").respond_with_data(body, content_type="text/csv")
    session = make_session(retries=0, backoff_factor=0)
    digest = download(
        session, httpserver.url_for("/f"), tmp_path / "lc.csv", timeout=(2, 5), expect="csv"
    )
    assert (tmp_path / "lc.csv").read_bytes() == body
    assert digest == hashlib.sha256(body).hexdigest()
    assert [p.name for p in tmp_path.iterdir()] == ["lc.csv"]
    assert np.isfinite(parse_lightcurve_csv(body.decode(), where="f")["mjd"]).all()


# --- bounded waits, deadlines, exact truncation counts, credentials in URLs (issue 7) --------


def test_long_retry_after_is_capped_and_logged(httpserver, dr_rows, caplog):
    """Regression: a 429 with Retry-After: 3600 slept silently for an hour."""
    caplog.set_level(logging.INFO, logger="astropipe")
    body = service_csv(dr_rows, OIDS[:1])
    expect_id(httpserver, OIDS[0], body, oneshot=True).respond_with_data(
        "slow down", status=429, headers={"Retry-After": "3600"}
    )
    expect_id(httpserver, OIDS[0], body).respond_with_response(csv_response(body))
    start = time.monotonic()
    frame, _ = fetch_lightcurves(
        cfg_for(httpserver, ids=[OIDS[0]], backoff_factor=0.0, max_retry_after=1.0)
    )
    elapsed = time.monotonic() - start
    assert [e[1].status_code for e in httpserver.log] == [429, 200]
    assert 1.0 <= elapsed < 10.0
    assert len(frame) == 14
    waits = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting")]
    url = httpserver.url_for(PATH)
    assert waits == [
        "waiting 1 s (Retry-After 3600 s capped at max_retry_after) before retry 1 of 2 for "
        f"{url}?ID={OIDS[0]}&BAD_CATFLAGS_MASK=32768&FORMAT=CSV"
    ]


def test_retry_after_past_the_deadline_is_not_waited(httpserver):
    httpserver.expect_request(PATH).respond_with_data(
        "slow down", status=503, headers={"Retry-After": "30"}
    )
    start = time.monotonic()
    with pytest.raises(ServiceError, match=r"within the 2 s deadline .*after the deadline"):
        fetch_lightcurves(cfg_for(httpserver, ids=[OIDS[0]], max_retry_after=30, deadline=2))
    assert time.monotonic() - start < 2.0
    assert len(httpserver.log) == 1


@pytest.mark.timeout(60)
def test_deadline_stops_a_server_that_drips_one_byte_every_half_second(dr_rows, tmp_path):
    """Each byte arrives well within the read timeout, so only the deadline can end this."""
    body = service_csv(dr_rows, OIDS[:1]).encode()
    stop = threading.Event()

    def drip(request: Request) -> Response:
        def chunks():
            for i in range(len(body)):
                if stop.wait(0.5):
                    return
                yield body[i : i + 1]

        response = Response(chunks(), content_type="text/csv")
        response.headers["Content-Length"] = str(len(body))
        return response

    server = HTTPServer(threaded=True)
    server.expect_request(PATH).respond_with_handler(drip)
    server.start()
    try:
        start = time.monotonic()
        with pytest.raises(ServiceError, match=r"within the 2 s deadline \(\d+ bytes of the body"):
            fetch_lightcurves(cfg_for(server, ids=[OIDS[0]], timeout=[2.0, 5.0], deadline=2.0))
        elapsed = time.monotonic() - start
        assert 2.0 <= elapsed < 4.0, elapsed  # overrun bounded by one drip, not the body
        session = make_session(retries=0, backoff_factor=0)
        with pytest.raises(ServiceError, match="deadline"):
            download(session, server.url_for(PATH), tmp_path / "lc.csv", timeout=(2, 5), deadline=1)
        assert list(tmp_path.iterdir()) == []
    finally:
        stop.set()
        server.clear()
        if server.is_running():
            server.stop()


@pytest.mark.timeout(60)
def test_truncation_message_gives_the_bytes_that_really_arrived(tmp_path):
    """Regression: a body that stalls after 300 of 1000 bytes was reported "truncated after 0
    bytes": the 300 sat in a half-filled 64 KiB read when the read timeout fired."""
    stop = threading.Event()

    def stall(request: Request) -> Response:
        def chunks():
            yield b"oid,mjd\n" + b"1" * 292  # 300 bytes, then nothing
            stop.wait(10)

        response = Response(chunks(), content_type="text/csv")
        response.headers["Content-Length"] = "1000"
        return response

    server = HTTPServer(threaded=True)
    server.expect_request("/stall.csv").respond_with_handler(stall)
    server.start()
    try:
        session = make_session(retries=0, backoff_factor=0)
        with pytest.raises(ServiceResponseError) as err:
            download(session, server.url_for("/stall.csv"), tmp_path / "s.csv", timeout=(2, 0.5))
        assert "body truncated after 300 bytes of the 1000 declared" in str(err.value)
        assert list(tmp_path.iterdir()) == []
    finally:
        stop.set()
        server.clear()
        if server.is_running():
            server.stop()


def test_truncation_count_is_exact_past_whole_reads(httpserver, tmp_path):
    sent, declared = 150_000, 200_000  # not a multiple of the 64 KiB read size
    cut = Response(b"1" * sent, content_type="text/csv")
    cut.headers["Content-Length"] = str(declared)
    cut.automatically_set_content_length = False
    httpserver.expect_request("/big.csv").respond_with_response(cut)
    session = make_session(retries=0, backoff_factor=0)
    with pytest.raises(ServiceResponseError) as err:
        download(session, httpserver.url_for("/big.csv"), tmp_path / "big.csv", timeout=(2, 5))
    assert f"body truncated after {sent} bytes of the {declared} declared" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_credentials_in_the_configured_url_are_recorded_nowhere(
    httpserver, dr_rows, tmp_path, monkeypatch, caplog
):
    """user:password@ and ?token= in ztf.irsa.url reach the server, never outputs or logs."""
    from astropipe.config import compose
    from astropipe.ztf.stage import run

    password, token = "hunter2-PASSWORD-9c1e", "tok-SECRET-4b7d"
    body = service_csv(dr_rows, OIDS[:1])
    httpserver.expect_oneshot_request(PATH).respond_with_data("busy", status=503)
    httpserver.expect_request(PATH).respond_with_response(csv_response(body))
    host = httpserver.url_for(PATH).split("://", 1)[1]
    url = f"http://astro:{password}@{host}?api_token={token}&mode=lc"
    root = Path(__file__).resolve().parents[1]
    params = compose(root=root)
    params["ztf"]["source"] = "irsa"
    params["ztf"]["irsa"].update(
        url=url, ids=[OIDS[0]], filters=["zg", "zr"], retries=1, backoff_factor=0.0
    )
    params["ztf"]["alerts"]["path"] = str(root / "data/sample/ztf/alerts")
    params["ztf"]["alerts"]["cutouts"] = False
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ZTF_API_TOKEN", raising=False)
    caplog.set_level(logging.DEBUG)
    summary = run(params)
    assert summary["lightcurve_rows_by_source"]["irsa"] == 14
    # The server did get the credentials: basic auth and the token parameter.
    request = httpserver.log[-1][0]
    assert request.authorization.password == password and request.args["api_token"] == token
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 4  # alerts, light curves, report, metrics
    for path in files:
        data = path.read_bytes()
        assert password.encode() not in data and token.encode() not in data, path
    lc = pq.read_schema(tmp_path / "data/raw/ztf/lightcurves.parquet").metadata
    assert host.encode() in b"".join(lc.values())  # the URL is recorded, minus credentials
    # The test server's own access log (werkzeug) shows what it received: not ours to scrub.
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "werkzeug")
    assert "HTTP/1.1" in logged and host.split("/")[0] in logged  # urllib3's request lines
    assert password not in logged and token not in logged
    # Errors too: a failing run names the URL, not its secrets.
    httpserver.clear()
    httpserver.expect_request(PATH).respond_with_data("denied", status=403)
    with pytest.raises(ServiceError, match="HTTP 403") as err:
        run(params)
    assert password not in str(err.value) and token not in str(err.value)
    assert "api_token=%2A%2A%2A" in str(err.value)


def test_redact_params_keeps_credential_free_values_identical():
    from astropipe.sources.redact import redact_params, scrub_text

    params = {"url": "https://irsa.example/p", "token_env": "ZTF_API_TOKEN", "n": [1, "x"]}
    assert redact_params(params) == params
    assert redact_params({"u": ["https://a:b@h/p?key=v&x=1"]}) == {
        "u": ["https://h/p?key=%2A%2A%2A&x=1"]
    }
    text = "GET https://a:b@h/p?x=1&access_token=zz9 failed; password=pw1"
    assert scrub_text(text) == "GET https://h/p?x=1&access_token=*** failed; password=***"
