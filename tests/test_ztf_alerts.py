"""Alert packet decoding: every schema version, known values, tarballs, bad input."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.io import fits

from astropipe.compute import ComputeConfig
from astropipe.errors import InputFileError, MissingInputError
from astropipe.io.tables import write_parquet
from astropipe.lightcurve import to_lightcurve_table
from astropipe.ztf.alerts import decode_packet
from astropipe.ztf.collector import AlertCollector
from astropipe.ztf.packets import Packet, iter_packets
from astropipe.ztf.stage import _alert_lightcurves

ALERTS = Path(__file__).resolve().parents[1] / "data" / "sample" / "ztf" / "alerts"
GOOD = sorted(p for p in ALERTS.glob("*.avro") if "schemaless" not in p.name)


def _compute(n: int) -> ComputeConfig:
    """Synchronous for one worker, else a pool of ``n`` processes."""
    if n == 1:
        return ComputeConfig(scheduler="synchronous")
    return ComputeConfig(scheduler="processes", workers=n)


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_every_schema_version_decodes(path: Path) -> None:
    alert = decode_packet(Packet(path.name, path.read_bytes()))
    # File names are <candid>_v<schemavsn>.avro (see PROVENANCE.md); the v3.2 Fink template is
    # written with a 3.1 writer schema but its record says 3.2.
    expected = path.stem.split("_v", 1)[1]
    assert alert.schemavsn == expected
    assert "jd" in alert.record["candidate"]


def test_all_versions_present() -> None:
    versions = {p.stem.split("_v", 1)[1] for p in GOOD}
    assert versions == {
        "1.0",
        "1.1",
        "1.7",
        "1.8",
        "2.0",
        "3.0",
        "3.1",
        "3.2",
        "3.3",
        "3.5",
        "4.01",
        "4.02",
    }


@pytest.mark.parametrize(
    ("name", "object_id", "candid", "magpsf", "fid", "n_prv", "n_det"),
    [
        (
            "739260766315010006_v3.2",
            "ZTF17aaacxxf",
            739260766315010006,
            15.371133804321289,
            2,
            28,
            22,
        ),
        (
            "3005140370015010009_v4.02",
            "ZTF18acullba",
            3005140370015010009,
            16.752946853637695,
            1,
            26,
            12,
        ),
        ("87704463155000_v1.0", None, -87704463155000, 18.992700576782227, 1, 18, 1),
    ],
)
def test_known_packet_values(name, object_id, candid, magpsf, fid, n_prv, n_det) -> None:
    path = ALERTS / f"{name}.avro"
    collector = AlertCollector()
    collector.add(decode_packet(Packet(path.name, path.read_bytes())))
    table = collector.alerts_table().to_pylist()
    assert len(table) == 1
    row = table[0]
    assert row["objectId"] == object_id
    assert row["candid"] == candid
    assert row["magpsf"] == pytest.approx(magpsf, rel=1e-7)
    assert row["fid"] == fid
    assert row["band"] == {1: "zg", 2: "zr"}[fid]
    assert row["mjd"] == pytest.approx(row["jd"] - 2400000.5, abs=1e-9)
    assert row["n_prv_candidates"] == n_prv
    lc = collector.lightcurve_columns()
    if object_id is None:  # v1.0 test packets have no objectId: no light-curve rows
        assert lc["object_id"] == []
        assert collector.lc_skipped_no_object == 1 + n_prv
    else:
        assert len(lc["object_id"]) == 1 + n_prv
        assert sum(not u for u in lc["is_upper_limit"]) == 1 + n_det


def test_schemaless_packet_is_rejected_with_reason() -> None:
    path = ALERTS / "87704463155000_v0_schemaless_datum.avro"
    with pytest.raises(
        InputFileError, match=r"schemaless_datum\.avro: not an Avro Object Container"
    ):
        decode_packet(Packet(path.name, path.read_bytes()))


def test_truncated_packet(tmp_path: Path) -> None:
    data = (ALERTS / "739260766315010006_v3.2.avro").read_bytes()[:5000]
    with pytest.raises(InputFileError, match="truncated or corrupt"):
        decode_packet(Packet("cut.avro", data))


def test_non_avro_file() -> None:
    with pytest.raises(InputFileError, match="not an Avro Object Container"):
        decode_packet(Packet("notes.avro", b"SIMPLE  =                    T"))


def test_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match="no alert packets found"):
        list(iter_packets(tmp_path))


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match="no such file or directory"):
        list(iter_packets(tmp_path / "nope"))


def _night(tmp_path: Path, files: list[Path]) -> Path:
    tar_path = tmp_path / "ztf_public_20231012.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for f in files:
            tar.add(f, arcname=f.name)
    return tar_path


def test_night_tarball_streams_the_same_packets(tmp_path: Path) -> None:
    files = [p for p in GOOD if "v4.01" in p.name]
    tar_path = _night(tmp_path, files)
    packets = list(iter_packets(tar_path))
    assert [p.name.split("!", 1)[1] for p in packets] == [f.name for f in files]
    assert [p.data for p in packets] == [f.read_bytes() for f in files]
    assert not any(tmp_path.glob("*.avro")), "the tarball must not be extracted to disk"


def test_truncated_tarball(tmp_path: Path) -> None:
    tar_path = _night(tmp_path, GOOD[:5])
    cut = tmp_path / "ztf_public_20231013.tar.gz"
    cut.write_bytes(tar_path.read_bytes()[: tar_path.stat().st_size // 2])
    with pytest.raises(InputFileError, match="not a readable tar archive"):
        list(iter_packets(cut))


def test_limit() -> None:
    assert len(list(iter_packets(ALERTS, limit=7))) == 7


def test_duplicate_candid_keeps_newest_schema() -> None:
    collector = AlertCollector()
    for v in ("3.0", "3.3"):
        path = ALERTS / f"472263571115115000_v{v}.avro"
        collector.add(decode_packet(Packet(path.name, path.read_bytes())))
    rows = collector.alerts_table().to_pylist()
    assert [r["schemavsn"] for r in rows] == ["3.3"]


def test_lightcurve_dedup_and_upper_limits() -> None:
    collector = AlertCollector()
    for path in GOOD:
        collector.add(decode_packet(Packet(path.name, path.read_bytes())))
    lc = to_lightcurve_table(_alert_lightcurves(collector)).to_pandas()
    assert not lc.duplicated(["object_id", "mjd", "band"]).any()
    limits = lc[lc.is_upper_limit]
    assert limits["mag"].isna().all() and limits["limiting_mag"].notna().all()
    # ZTF17aaacxxf (v3.2 variable star): 1 candidate + 22 prv detections, 6 limits, all zr
    star = lc[lc.object_id == "ZTF17aaacxxf"]
    assert (~star.is_upper_limit).sum() == 23 and star.is_upper_limit.sum() == 6
    assert all(np.all(np.diff(g.mjd.to_numpy()) > 0) for _, g in star.groupby("band"))


def test_cutouts_are_fits_or_skipped_jpeg() -> None:
    collector = AlertCollector()
    path = ALERTS / "739260766315010006_v3.2.avro"
    stamps = collector.add(decode_packet(Packet(path.name, path.read_bytes())))
    assert [n for n, _ in stamps] == [
        f"ZTF17aaacxxf/739260766315010006_{k}.fits" for k in ("science", "template", "difference")
    ]
    with fits.open(io.BytesIO(gzip.decompress(stamps[0][1]))) as hdul:
        assert hdul[0].data.shape == (63, 63)
    jpeg = ALERTS / "1726958725155000_v1.1.avro"
    assert collector.add(decode_packet(Packet(jpeg.name, jpeg.read_bytes()))) == []
    assert collector.jpeg_skipped == 3
    keep = AlertCollector(keep_jpeg=True)
    assert all(
        n.endswith(".jpg") for n, _ in keep.add(decode_packet(Packet(jpeg.name, jpeg.read_bytes())))
    )


def test_alerts_table_schema_is_explicit_and_stable(tmp_path: Path) -> None:
    def build(order):
        c = AlertCollector()
        for p in order:
            c.add(decode_packet(Packet(p.name, p.read_bytes())))
        return c.alerts_table()

    a, b = build(GOOD), build(list(reversed(GOOD)))
    assert a.schema == b.schema
    assert a.schema.field("candid").type == "int64"
    assert a.column_names[:4] == ["objectId", "candid", "alertId", "schemavsn"]
    # byte-identical files whatever the input order (NaN-safe comparison)
    write_parquet(a, tmp_path / "a.parquet", provenance={"x": 1})
    write_parquet(b, tmp_path / "b.parquet", provenance={"x": 1})
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert pq.read_table(tmp_path / "a.parquet").num_rows == 35  # 38 packets, 3 re-serialised


def test_parallel_ingest_equals_serial(tmp_path: Path) -> None:
    from astropipe.ztf.config import AlertsConfig
    from astropipe.ztf.ingest import ingest_packets

    packets = [Packet(p.name, p.read_bytes()) for p in sorted(ALERTS.glob("*.avro"))]
    # enough packets for several batches, with the undecodable one quarantined in each
    stream = packets * (2 * AlertsConfig.batch_size // len(packets) + 2)
    results = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        ing = ingest_packets(
            stream, keep_jpeg=False, cutout_dir=out, fail=False, compute=_compute(workers)
        )
        write_parquet(ing.collector.alerts_table(), out / "alerts.parquet")
        results[workers] = ing
    one, two = results[1], results[2]
    assert one.quarantined == two.quarantined and len(one.quarantined) > 1
    assert one.collector.lc == two.collector.lc
    assert one.stamps_written == two.stamps_written > 0
    assert (tmp_path / "w1/alerts.parquet").read_bytes() == (
        tmp_path / "w2/alerts.parquet"
    ).read_bytes()
    stamps1 = sorted(p.relative_to(tmp_path / "w1") for p in (tmp_path / "w1").rglob("*.fits"))
    stamps2 = sorted(p.relative_to(tmp_path / "w2") for p in (tmp_path / "w2").rglob("*.fits"))
    assert stamps1 == stamps2 and len(stamps1) > 50
