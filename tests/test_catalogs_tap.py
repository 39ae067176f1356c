"""Live catalogs against a real HTTP server on loopback (pytest-httpserver).

The server plays the archive's TAP ``sync`` endpoint and answers with the REAL sample CSVs of
data/sample/catalogs: the KOI file as downloaded (with its ``#`` comment block) and the TOI
file as TAP answers (the same rows, no comment block). Faults: 500, 429 + Retry-After, a
persistent 503, an HTML error page, a body cut short of its Content-Length, and a body cut at
a line's middle. The freshness rule is tested with an injected clock.
"""

from __future__ import annotations

import hashlib
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from astropipe.catalogs.schemas import KOI, TOI
from astropipe.catalogs.stage import run
from astropipe.config import compose
from astropipe.errors import ServiceError, ServiceResponseError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data/sample/catalogs"
PATH = "/TAP/sync"
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _tap_body(path: Path) -> bytes:
    """The file's rows as the TAP service answers them: no comment block."""
    lines = path.read_bytes().splitlines(keepends=True)
    return b"".join(ln for ln in lines if not ln.startswith(b"#"))


KOI_CSV = (SAMPLE / "koi_cumulative.csv").read_bytes()  # as downloaded: with comments
TOI_TAP = _tap_body(SAMPLE / "toi.csv")


def _table_of(request: Request) -> str:
    query = request.args["query"]
    assert request.args["format"] == "csv"
    return query.rsplit(" from ", 1)[1].split()[0]


def archive(request: Request) -> Response:
    """The archive's answer to a TAP sync query for cumulative or toi."""
    body = {"cumulative": KOI_CSV, "toi": TOI_TAP}[_table_of(request)]
    return Response(body, content_type="text/csv")


def params_for(httpserver: HTTPServer, tmp_path: Path, *extra: str) -> dict:
    return compose(
        [
            "catalogs.source=live",
            f"catalogs.tap.url={httpserver.url_for(PATH)}",
            "catalogs.catalogs=[koi,toi]",
            "catalogs.link.lightcurves=[]",
            "catalogs.tap.retries=2",
            "catalogs.tap.backoff_factor=0.0",
            "catalogs.tap.timeout=[2.0,10.0]",
            f"catalogs.cache_dir={tmp_path / 'cache'}",
            *extra,
        ],
        root=ROOT,
    )


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _digests(root: Path) -> dict[str, str]:
    files = sorted((root / "data/raw/catalogs").iterdir()) + [
        root / "reports/ingest_catalogs.json",
        root / "reports/metrics/ingest_catalogs.json",
    ]
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def test_live_run_sends_the_configured_query_and_reads_both_forms(httpserver, workdir):
    httpserver.expect_request(PATH).respond_with_handler(archive)
    summary = run(params_for(httpserver, workdir), clock=lambda: T0)
    queries = [parse_qs(e[0].query_string.decode())["query"][0] for e in httpserver.log]
    assert queries == [
        f"select {','.join(KOI.read_names)} from cumulative",
        f"select {','.join(TOI.read_names)} from toi",
    ]
    assert summary["catalogs"]["koi"]["rows"] == 9564
    assert summary["catalogs"]["koi"]["descriptions_from"] == "comment block"
    assert summary["catalogs"]["toi"]["rows"] == 7703
    assert summary["catalogs"]["toi"]["descriptions_from"] == "declared schema"
    assert summary["fetch"]["toi"]["fetched"] is True
    from astropipe.io.tables import read_metadata

    meta = read_metadata(workdir / "data/raw/catalogs/toi.parquet")
    prov = meta["provenance"]
    assert prov["source"] == "live"
    assert prov["query"]["params"]["query"].endswith("from toi")
    (url, digest), = prov["inputs"].items()  # fmt: skip
    assert (
        url.startswith(httpserver.url_for(PATH)) and digest == hashlib.sha256(TOI_TAP).hexdigest()
    )
    assert "fetch" not in (workdir / "reports/metrics/ingest_catalogs.json").read_text()


def test_freshness_refetches_only_what_is_older_than_its_age(httpserver, workdir):
    httpserver.expect_request(PATH).respond_with_handler(archive)
    params = params_for(httpserver, workdir)

    def fetched_at(hours: float) -> list[str]:
        before = len(httpserver.log)
        s = run(params, clock=lambda: T0 + timedelta(hours=hours))
        tables = [_table_of(e[0]) for e in httpserver.log[before:]]
        assert [n for n, f in s["fetch"].items() if f["fetched"]] == [
            {"cumulative": "koi", "toi": "toi"}[t] for t in tables
        ]
        return tables

    assert fetched_at(0) == ["cumulative", "toi"]
    first = _digests(workdir)
    assert fetched_at(11.9) == []  # TOI 12 h, KOI 24 h: both fresh
    assert _digests(workdir) == first  # the fetch time reaches no output
    assert fetched_at(12.0) == ["toi"]  # TOI is 12 h old: stale; KOI is fresh
    assert fetched_at(23.9) == []  # KOI 23.9 h old, TOI 11.9 h since its re-fetch
    assert fetched_at(24.0) == ["cumulative", "toi"]  # KOI 24 h; TOI 12 h since 12.0


def test_freshness_rule_per_catalog(httpserver, workdir):
    httpserver.expect_request(PATH).respond_with_handler(archive)
    params = params_for(httpserver, workdir)
    run(params, clock=lambda: T0)
    s = run(params, clock=lambda: T0 + timedelta(hours=25))
    assert {n: f["fetched"] for n, f in s["fetch"].items()} == {"koi": True, "toi": True}
    s = run(params, clock=lambda: T0 + timedelta(hours=36))  # 11 h after the last fetch
    assert {n: f["fetched"] for n, f in s["fetch"].items()} == {"koi": False, "toi": False}
    assert s["fetch"]["toi"]["freshness"] == "11.0 h old, fresh for 12 h"
    s = run(params, clock=lambda: T0 - timedelta(hours=1))  # a clock that moved back
    assert s["fetch"]["koi"]["freshness"] == "fetched in the future (the clock moved back)"


def test_changed_query_or_damaged_cache_is_fetched_again(httpserver, workdir):
    httpserver.expect_request(PATH).respond_with_handler(archive)
    run(params_for(httpserver, workdir), clock=lambda: T0)
    (workdir / "cache/koi.csv").write_bytes(b"kepid\n1\n")
    narrowed = params_for(
        httpserver, workdir, "catalogs.tap.queries.toi='select {columns} from toi where tid > 0'"
    )
    s = run(narrowed, clock=lambda: T0 + timedelta(hours=1))
    assert s["fetch"]["koi"]["freshness"] == "the cached answer is missing or damaged"
    assert s["fetch"]["toi"]["freshness"] == "the query changed since it was cached"


def test_dry_run_plans_without_any_request(httpserver, workdir):
    httpserver.expect_request(PATH).respond_with_handler(archive)
    params = params_for(httpserver, workdir)
    plan = run(params, dry_run=True, clock=lambda: T0)
    assert [(p["catalog"], p["would_fetch"], p["why"]) for p in plan["requests"]] == [
        ("koi", True, "not cached"),
        ("toi", True, "not cached"),
    ]
    assert plan["requests"][1]["url"].startswith(httpserver.url_for(PATH) + "?query=select+toi")
    assert httpserver.log == [] and not (workdir / "data").exists()
    run(params, clock=lambda: T0)
    plan = run(params, dry_run=True, clock=lambda: T0 + timedelta(hours=13))
    assert [p["would_fetch"] for p in plan["requests"]] == [False, True]


def _toi_only(httpserver, workdir, *extra):
    return params_for(httpserver, workdir, "catalogs.catalogs=[toi]", *extra)


def test_500_then_success_and_429_retry_after(httpserver, workdir):
    httpserver.expect_ordered_request(PATH).respond_with_data("oops", status=500)
    httpserver.expect_ordered_request(PATH).respond_with_data(
        "slow down", status=429, headers={"Retry-After": "1"}
    )
    httpserver.expect_ordered_request(PATH).respond_with_handler(archive)
    start = time.monotonic()
    s = run(_toi_only(httpserver, workdir), clock=lambda: T0)
    assert time.monotonic() - start >= 1.0  # the Retry-After was waited, not the 0 backoff
    assert [e[1].status_code for e in httpserver.log] == [500, 429, 200]
    assert s["catalogs"]["toi"]["rows"] == 7703


def _good_outputs_then(httpserver, workdir):
    """A good run first: a failing run afterwards must leave its outputs as they were."""
    httpserver.expect_oneshot_request(PATH).respond_with_handler(archive)
    run(_toi_only(httpserver, workdir), clock=lambda: T0)
    return _digests(workdir)


def test_persistent_503_is_a_service_error_and_outputs_stay(httpserver, workdir):
    before = _good_outputs_then(httpserver, workdir)
    httpserver.expect_request(PATH).respond_with_data("down", status=503)
    with pytest.raises(ServiceError, match=r"/TAP/sync\?query=select.*HTTP 503 .*after retries"):
        run(_toi_only(httpserver, workdir), clock=lambda: T0 + timedelta(hours=13))
    assert _digests(workdir) == before


def test_html_error_page_is_refused_and_not_cached(httpserver, workdir):
    before = _good_outputs_then(httpserver, workdir)
    cached = (workdir / "cache/toi.json").read_text()
    page = "<!DOCTYPE html><html><head><title>Service Unavailable</title></head></html>"
    httpserver.expect_request(PATH).respond_with_data(page, content_type="text/html")
    with pytest.raises(ServiceResponseError, match=r"got an HTML page \(page title: "):
        run(_toi_only(httpserver, workdir), clock=lambda: T0 + timedelta(hours=13))
    assert (workdir / "cache/toi.json").read_text() == cached
    assert _digests(workdir) == before


def test_body_short_of_content_length_is_refused(httpserver, workdir):
    cut = Response(TOI_TAP[:100_000], content_type="text/csv")
    cut.headers["Content-Length"] = str(len(TOI_TAP))
    cut.automatically_set_content_length = False
    httpserver.expect_request(PATH).respond_with_response(cut)
    with pytest.raises(ServiceResponseError, match=f"body truncated .*{len(TOI_TAP)}"):
        run(_toi_only(httpserver, workdir), clock=lambda: T0)
    assert not (workdir / "cache/toi.csv").exists()
    assert not (workdir / "data/raw/catalogs").exists()


def test_body_cut_mid_line_is_refused_and_not_cached(httpserver, workdir):
    cut = TOI_TAP[: TOI_TAP.index(b"\n", 200_000) - 25]  # Content-Length matches the cut body
    httpserver.expect_request(PATH).respond_with_data(cut, content_type="text/csv")
    with pytest.raises(
        ServiceResponseError, match=r"ends mid-line .*truncated.*nothing was cached"
    ):
        run(_toi_only(httpserver, workdir), clock=lambda: T0)
    assert not (workdir / "cache/toi.csv").exists()


def test_sample_mode_never_opens_a_socket(workdir, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("sample mode opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    (workdir / "data").mkdir()
    (workdir / "data/sample").symlink_to(ROOT / "data/sample")
    params = compose(["catalogs.link.lightcurves=[]"], root=ROOT)
    s = run(params, clock=lambda: (_ for _ in ()).throw(AssertionError("clock read")))
    assert s["catalogs"]["toi"]["rows"] == 7703 and "fetch" not in s
    assert not (workdir / "data/cache").exists()  # no cache directory either
