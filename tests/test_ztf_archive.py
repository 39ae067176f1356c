"""Live alert-archive nights against a real HTTP server on loopback (pytest-httpserver).

The served night is a REAL tarball built here from the v4.01 packets in
data/sample/ztf/alerts (one Avro file per member, as in ztf_public_YYYYMMDD.tar.gz).
"""

from __future__ import annotations

import copy
import io
import tarfile
from pathlib import Path

import pytest
from werkzeug import Response

from astropipe.config import compose
from astropipe.errors import ConfigError, ServiceError, ServiceResponseError
from astropipe.io.tables import read_parquet
from astropipe.sources.http import make_session
from astropipe.ztf.archive import fetch_nights, plan_nights
from astropipe.ztf.config import AlertsConfig
from astropipe.ztf.packets import iter_packets
from astropipe.ztf.stage import run

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "data/sample/ztf/alerts"
NIGHT = "20240701"
NAME = f"ztf_public_{NIGHT}.tar.gz"
BASE = "/alerts/public"


@pytest.fixture(scope="module")
def night_bytes() -> bytes:
    members = sorted(ALERTS.glob("*v4.01.avro"))
    assert len(members) >= 5
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for p in members:
            tar.add(p, arcname=p.name)
    return buf.getvalue()


@pytest.fixture()
def local_night(tmp_path: Path, night_bytes: bytes) -> Path:
    path = tmp_path / "local" / NAME
    path.parent.mkdir()
    path.write_bytes(night_bytes)
    return path


def serve(server, body: bytes, *, oneshot: bool = False):
    expect = server.expect_oneshot_request if oneshot else server.expect_request
    return expect(f"{BASE}/{NAME}", method="GET").respond_with_data(
        body, content_type="application/gzip"
    )


def cfg_for(server, cache: Path, nights=(NIGHT,)) -> AlertsConfig:
    return AlertsConfig(archive_url=server.url_for(BASE), nights=list(nights), cache_dir=str(cache))


def quick_session(retries: int = 2):
    return make_session(retries=retries, backoff_factor=0.01)


def test_fetched_packets_equal_the_local_tarball(httpserver, tmp_path, local_night, night_bytes):
    serve(httpserver, night_bytes)
    cache = tmp_path / "cache"
    paths = fetch_nights(cfg_for(httpserver, cache), session=quick_session())
    assert paths == [cache / NAME]
    assert paths[0].read_bytes() == night_bytes
    fetched = [(p.name.split("!")[1], p.data) for p in iter_packets(paths[0])]
    local = [(p.name.split("!")[1], p.data) for p in iter_packets(local_night)]
    assert fetched == local and len(local) == len(list(ALERTS.glob("*v4.01.avro")))
    # A second fetch finds the night in the cache and makes no request at all.
    assert len(httpserver.log) == 1
    assert fetch_nights(cfg_for(httpserver, cache), session=quick_session()) == paths
    assert len(httpserver.log) == 1


def test_nights_come_back_in_night_order(httpserver, tmp_path, night_bytes):
    for night in ("20240702", "20240630"):
        httpserver.expect_request(f"{BASE}/ztf_public_{night}.tar.gz").respond_with_data(
            night_bytes
        )
    cfg = cfg_for(httpserver, tmp_path, nights=["20240702", "20240630"])
    paths = fetch_nights(cfg, session=quick_session())
    assert [p.name for p in paths] == ["ztf_public_20240630.tar.gz", "ztf_public_20240702.tar.gz"]


def test_404_names_the_night_and_the_fix(httpserver, tmp_path):
    httpserver.expect_request(f"{BASE}/{NAME}").respond_with_data("Not Found", status=404)
    with pytest.raises(ServiceError) as err:
        fetch_nights(cfg_for(httpserver, tmp_path / "cache"), session=quick_session())
    msg = str(err.value)
    assert NIGHT in msg and httpserver.url_for(f"{BASE}/{NAME}") in msg
    assert "remove '20240701' from ztf.alerts.nights" in msg
    assert list((tmp_path / "cache").iterdir()) == []


def test_500_then_200_is_retried(httpserver, tmp_path, night_bytes):
    httpserver.expect_ordered_request(f"{BASE}/{NAME}").respond_with_data("boom", status=500)
    httpserver.expect_ordered_request(f"{BASE}/{NAME}").respond_with_data(night_bytes)
    paths = fetch_nights(cfg_for(httpserver, tmp_path), session=quick_session())
    assert [e[1].status_code for e in httpserver.log] == [500, 200]
    assert paths[0].read_bytes() == night_bytes


def test_truncated_body_leaves_nothing_in_the_cache(httpserver, tmp_path, night_bytes):
    cut = Response(night_bytes[: len(night_bytes) // 2], content_type="application/gzip")
    cut.headers["Content-Length"] = str(len(night_bytes))
    cut.automatically_set_content_length = False
    httpserver.expect_request(f"{BASE}/{NAME}").respond_with_response(cut)
    cache = tmp_path / "cache"
    with pytest.raises(ServiceResponseError, match="truncated"):
        fetch_nights(cfg_for(httpserver, cache), session=quick_session(retries=0))
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize(
    ("nights", "match"),
    [
        ([20240701], r"\[20240701\]"),
        (["2024-07-01"], "2024-07-01"),
        (["20241301"], "20241301"),
        (["20240701", "20240701"], "more than once"),
    ],
)
def test_bad_nights_are_config_errors(nights, match):
    with pytest.raises(ConfigError, match=match):
        AlertsConfig(nights=nights).validate()


def test_plan_uses_the_archive_layout():
    plan = plan_nights(AlertsConfig(nights=["20240702", "20240701"]))
    assert [n.url for n in plan] == [
        "https://ztf.uw.edu/alerts/public/ztf_public_20240701.tar.gz",
        "https://ztf.uw.edu/alerts/public/ztf_public_20240702.tar.gz",
    ]
    assert plan[0].path == Path("data/cache/ztf_archive/ztf_public_20240701.tar.gz")


# --- the stage -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_params() -> dict:
    params = compose(root=ROOT)
    params["ztf"]["dr"]["path"] = str(ROOT / "data/sample/ztf/irsa")
    params["ztf"]["alerts"]["cutouts"] = False
    return params


def test_dry_run_plans_urls_and_makes_no_request(httpserver, tmp_path, base_params, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = copy.deepcopy(base_params)
    alerts = params["ztf"]["alerts"]
    alerts.update(archive_url=httpserver.url_for(BASE), nights=[NIGHT], cache_dir="cache")
    summary = run(params, dry_run=True)
    assert summary["archive_nights"] == [
        {
            "night": NIGHT,
            "url": httpserver.url_for(f"{BASE}/{NAME}"),
            "cache": f"cache/{NAME}",
            "cached": False,
        }
    ]
    assert len(httpserver.log) == 0
    assert list(tmp_path.iterdir()) == []


def test_run_on_archive_nights_equals_run_on_the_local_tarball(
    httpserver, tmp_path, night_bytes, base_params, monkeypatch
):
    serve(httpserver, night_bytes)
    # Same relative tarball path in both runs, so the `packet` names match too.
    local_root, live_root = tmp_path / "local", tmp_path / "live"
    (local_root / "nights").mkdir(parents=True)
    (local_root / "nights" / NAME).write_bytes(night_bytes)
    live_root.mkdir()

    monkeypatch.chdir(local_root)
    local = copy.deepcopy(base_params)
    local["ztf"]["alerts"]["path"] = f"nights/{NAME}"
    local_summary = run(local)

    monkeypatch.chdir(live_root)
    live = copy.deepcopy(base_params)
    live["ztf"]["alerts"].update(
        path="does/not/exist",
        archive_url=httpserver.url_for(BASE),
        nights=[NIGHT],
        cache_dir="nights",
    )
    live_summary = run(live)
    assert len(httpserver.log) == 1
    assert live_summary == local_summary and local_summary["alerts"] > 0

    for name in ("alerts", "lightcurves"):
        a = read_parquet(local_root / f"data/raw/ztf/{name}.parquet")
        b = read_parquet(live_root / f"data/raw/ztf/{name}.parquet")
        assert a.replace_schema_metadata(None).equals(b.replace_schema_metadata(None))
    packets = read_parquet(live_root / "data/raw/ztf/alerts.parquet").column("packet")
    assert all(p.startswith(f"nights/{NAME}!") for p in packets.to_pylist())
