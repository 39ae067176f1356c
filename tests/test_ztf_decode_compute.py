"""ingest_ztf speed and compute model: cached-schema decoding equals fastavro.reader, and
``compute.scheduler`` decides how packets are decoded (threads never start a process)."""

from __future__ import annotations

import io
import itertools
import logging
import random
from pathlib import Path

import fastavro
import pytest

from astropipe import compute
from astropipe.config import compose, find_root
from astropipe.errors import InputFileError
from astropipe.ztf import alerts, ingest
from astropipe.ztf.packets import Packet
from astropipe.ztf.stage import run

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "data" / "sample" / "ztf" / "alerts"
PACKETS = sorted(ALERTS.glob("*.avro"))


def _reference(data: bytes) -> list[object] | None:
    try:
        return list(itertools.islice(fastavro.reader(io.BytesIO(data)), 2))
    except Exception:  # noqa: BLE001 - the reference refuses it
        return None


def test_fast_path_decodes_every_real_packet_like_fastavro_reader() -> None:
    taken = 0
    for path in PACKETS:
        data = path.read_bytes()
        fast = alerts._decode_plain(Packet(path.name, data))
        if fast is None:
            continue
        taken += 1
        ref = _reference(data)
        # repr: NaN-safe equality of the nested records
        assert ref is not None and len(ref) == 1 and repr(ref[0]) == repr(fast.record)
        assert fast.schemavsn == alerts.decode_packet(Packet(path.name, data)).schemavsn
    assert taken == len(PACKETS) - 1  # all but the schemaless datum


def test_fast_path_on_mutated_packets_never_disagrees() -> None:
    rng = random.Random(9)
    sources = [p.read_bytes() for p in PACKETS if "schemaless" not in p.name]
    agreed = 0
    for _ in range(400):
        data = bytearray(rng.choice(sources))
        k = rng.randrange(len(data))
        if rng.random() < 0.7:
            data[k] = rng.randrange(256)
        else:
            del data[k : k + rng.randint(1, 40)]
        fast = alerts._decode_plain(Packet("m", bytes(data)))
        if fast is not None:  # whatever the fast path accepts, the reference reads the same
            ref = _reference(bytes(data))
            assert ref is not None and len(ref) == 1 and repr(ref[0]) == repr(fast.record)
            agreed += 1
    assert agreed > 20


def test_two_blocks_or_trailing_bytes_take_the_general_reader() -> None:
    data = next(p for p in PACKETS if p.name.endswith("v4.02.avro")).read_bytes()
    assert alerts._decode_plain(Packet("x", data)) is not None
    for tail in (b"\x00", b"\x02"):  # a dangling block header: the general reader refuses it
        assert alerts._decode_plain(Packet("x", data + tail)) is None
        with pytest.raises(InputFileError, match="^x: Avro decoding failed"):
            alerts.decode_packet(Packet("x", data + tail))


def _params(
    tmp: Path, scheduler: str, *extra: str, alerts: Path = ALERTS, dr: bool = False
) -> dict:
    """The stage's params with every output under ``tmp`` (the same paths whatever the
    scheduler: they are in the provenance); ``dr``: keep conf/'s DR light curves."""
    out = tmp / "out"
    return compose(
        [
            f"ztf.alerts.path={alerts}",
            *([] if dr else ["ztf.dr.path=null"]),
            f"ztf.outputs.dir={out}",
            f"ztf.outputs.alerts={out}/alerts.parquet",
            f"ztf.outputs.lightcurves={out}/lightcurves.parquet",
            f"ztf.outputs.cutouts={out}/cutouts",
            f"ztf.outputs.report={tmp}/report.json",
            f"ztf.outputs.metrics={tmp}/metrics.json",
            f"compute.scheduler={scheduler}",
            "compute.workers=2",
            *extra,
        ],
        root=find_root(),
    )


def _files(out: Path) -> dict[Path, bytes]:
    return {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_threads_start_no_process_and_match_synchronous(tmp_path: Path, monkeypatch) -> None:
    run(_params(tmp_path, "synchronous"))
    out = tmp_path / "out"
    before = _files(out)
    report = (tmp_path / "report.json").read_bytes()

    def no_process(*args: object, **kwargs: object) -> None:
        raise AssertionError("compute.scheduler=threads started a process pool")

    used: list[int] = []
    real = compute.ThreadPoolExecutor

    def threads(*, max_workers: int, **kwargs: object) -> object:
        used.append(max_workers)
        return real(max_workers=max_workers, **kwargs)

    monkeypatch.setattr(compute, "ProcessPoolExecutor", no_process)
    monkeypatch.setattr(compute, "ThreadPoolExecutor", threads)
    # several batches in flight (batch_size is left out of the provenance)
    run(_params(tmp_path, "threads", "ztf.alerts.batch_size=4"))
    assert used == [2]
    assert len(before) > 90 and Path("alerts.parquet") in before
    assert _files(out) == before  # tables and every stamp, byte for byte
    assert (tmp_path / "report.json").read_bytes() == report


def _relative_params(scheduler: str, *extra: str) -> dict:
    """Every output path relative to the working directory, as the committed conf/ gives them."""
    return compose(
        [
            f"ztf.alerts.path={ALERTS}",
            "ztf.dr.path=null",
            "ztf.outputs.dir=out",
            "ztf.outputs.alerts=out/alerts.parquet",
            "ztf.outputs.lightcurves=out/lightcurves.parquet",
            "ztf.outputs.packets=out/packets.parquet",
            "ztf.outputs.cutouts=out/cutouts",
            "ztf.outputs.report=report.json",
            "ztf.outputs.metrics=metrics.json",
            f"compute.scheduler={scheduler}",
            "compute.workers=2",
            *extra,
        ],
        root=ROOT,  # not the working directory's
    )


@pytest.mark.slow
def test_distributed_cluster_writes_the_synchronous_bytes(
    tmp_path: Path, dask_cluster: str, caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    """The session's cluster runs from another working directory: a task that wrote a stamp
    to a relative path would write it there (or fail), not under ``out/cutouts``."""
    monkeypatch.chdir(tmp_path)
    run(_relative_params("synchronous"))
    out = tmp_path / "out"
    before = _files(out)
    report = (tmp_path / "report.json").read_bytes()
    metrics = (tmp_path / "metrics.json").read_bytes()
    # batches of 4: the two workers decode and write stamps at the same time
    params = _relative_params(
        "distributed", f"compute.address={dask_cluster}", "ztf.alerts.batch_size=4"
    )
    with caplog.at_level(logging.WARNING, logger="astropipe.ztf.ingest"):
        run(params)
    assert len(before) > 90 and Path("alerts.parquet") in before
    assert sum(1 for p in before if p.parts[0] == "cutouts") > 80
    assert _files(out) == before  # tables and every stamp, byte for byte
    assert (tmp_path / "report.json").read_bytes() == report
    assert (tmp_path / "metrics.json").read_bytes() == metrics
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "out", "report.json"]
    # the schemaless datum was quarantined on a worker, and logged here
    assert any("quarantined" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------ streaming
def _night_dir(tmp: Path) -> Path:
    """The sample packets twice (the second copy under other names: same-content duplicates)."""
    night = tmp / "night"
    night.mkdir()
    for copy in ("a", "b"):
        for p in PACKETS:
            (night / f"{copy}_{p.name}").write_bytes(p.read_bytes())
    return night


def _stream_params(tmp: Path, night: Path, batch: int) -> dict:
    return _params(tmp, "synchronous", f"ztf.alerts.batch_size={batch}", alerts=night, dr=True)


def test_streamed_tables_equal_the_in_memory_tables_whatever_the_batch(
    tmp_path: Path, monkeypatch
) -> None:
    import json

    import pandas as pd
    import pyarrow.parquet as pq

    from astropipe.lightcurve import to_lightcurve_table
    from astropipe.ztf import spill
    from astropipe.ztf.config import ZtfConfig
    from astropipe.ztf.dr import read_dr_lightcurves
    from astropipe.ztf.packets import iter_packets
    from astropipe.ztf.stage import _alert_lightcurves

    night = _night_dir(tmp_path)
    # several row groups and light-curve buckets even on the sample
    monkeypatch.setattr(spill, "ROW_GROUP_ROWS", 16)
    monkeypatch.setattr(spill, "ALERT_GROUP_ROWS", 16)
    monkeypatch.setattr(spill, "BUCKET_ROWS", 3000)
    monkeypatch.setattr(spill, "ROUTE_ROWS", 200)  # bucket files written in several rounds
    snaps, reports = [], []
    for batch in (3, 256):
        run(_stream_params(tmp_path, night, batch))
        snaps.append(_files(tmp_path / "out"))
        reports.append(json.loads((tmp_path / "report.json").read_text()))
    # the bytes depend on the data only, not on the batch size
    assert snaps[0] == snaps[1] and reports[0] == reports[1]
    assert pq.ParquetFile(tmp_path / "out/alerts.parquet").metadata.num_row_groups == 3
    assert pq.ParquetFile(tmp_path / "out/lightcurves.parquet").metadata.num_row_groups > 100

    # the in-memory collector (the previous implementation) gives the same rows
    params = _stream_params(tmp_path, night, 256)
    ref = ingest.ingest_packets(iter_packets(night), keep_jpeg=False, cutout_dir=None, fail=False)
    ref_alerts = ref.collector.alerts_table().to_pandas()
    dr, _ = read_dr_lightcurves(ZtfConfig.from_params(params).dr)
    ref_lc = to_lightcurve_table(
        pd.concat([_alert_lightcurves(ref.collector), dr], ignore_index=True)
    ).to_pandas()
    pd.testing.assert_frame_equal(
        pq.read_table(tmp_path / "out/alerts.parquet").to_pandas(), ref_alerts
    )
    pd.testing.assert_frame_equal(
        pq.read_table(tmp_path / "out/lightcurves.parquet").to_pandas(), ref_lc
    )
    assert len(ref_alerts) == 35
    dups = reports[0]["duplicate_candids"]
    assert dups == ref.collector.duplicates() and len(dups) == 35  # every candid twice
    assert sum(d["same_content"] for d in dups) == 32  # 3 were re-serialised
    assert reports[0]["cutouts_written"] == sum(
        1 for _ in (tmp_path / "out/cutouts").rglob("*.fits")
    )


def test_types_merged_across_batches_like_the_collector(tmp_path: Path) -> None:
    import dataclasses

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from astropipe.io.tables import file_metadata
    from astropipe.ztf import spill
    from astropipe.ztf.collector import AlertCollector

    paths = [p for p in PACKETS if p.name.endswith("v4.01.avro")][:2]
    a, b = (alerts.decode_packet(Packet(p.name, p.read_bytes())) for p in paths)
    # b's schema says other types: nid wider (int64), field as text; a keeps int32 for both
    b = dataclasses.replace(
        b, candidate_types={**b.candidate_types, "nid": pa.int64(), "field": pa.string()}
    )
    whole = AlertCollector(stamps=False)
    parts = spill.AlertSpill(tmp_path)
    for alert, sha in ((a, "11" * 32), (b, "22" * 32)):
        whole.add(alert, sha256=sha)
        one = AlertCollector(stamps=False)
        one.add(alert, sha256=sha)
        parts.add(one)
    parts.write_alerts(tmp_path / "a.parquet", file_metadata({}, {}))
    got = pq.read_table(tmp_path / "a.parquet")
    assert got.schema.field("nid").type == pa.int64()
    assert got.schema.field("field").type == pa.string()
    assert sorted(got["field"].to_pylist()) == sorted(
        str(x.record["candidate"]["field"]) for x in (a, b)
    )
    pd.testing.assert_frame_equal(got.to_pandas(), whole.alerts_table().to_pandas())


def test_per_packet_provenance_is_a_table_and_the_footers_hold_its_digest(tmp_path: Path) -> None:
    """Regression: every packet's name and SHA-256 sat in memory and in each table's footer
    (~1 kB per alert, RSS grew with the night); now packets.parquet holds them, streamed."""
    import hashlib
    import json

    import pyarrow.parquet as pq

    from astropipe.io.tables import read_metadata
    from astropipe.provenance import relpath
    from astropipe.ztf.packetlog import packets_digest

    night = _night_dir(tmp_path)
    run(_stream_params(tmp_path, night, 5))
    out = tmp_path / "out"
    files = sorted(night.glob("*.avro"))
    expected = [(relpath(p), hashlib.sha256(p.read_bytes()).hexdigest()) for p in files]
    table = pq.read_table(out / "packets.parquet")
    got = zip(table["packet"].to_pylist(), table["sha256"].to_pylist(), strict=True)
    assert list(got) == expected
    lines = "".join(f"{n}\t{s}\n" for n, s in expected).encode()
    aggregate = {
        "table": str(out / "packets.parquet"),
        "count": len(expected),
        "sha256": hashlib.sha256(lines).hexdigest(),
    }
    assert packets_digest(out / "packets.parquet") == {k: aggregate[k] for k in ("count", "sha256")}
    for name in ("alerts.parquet", "lightcurves.parquet"):
        prov = read_metadata(out / name)["provenance"]
        assert prov["packets"] == aggregate
        assert not [k for k in prov["inputs"] if k.endswith(".avro")]  # only the DR files
        assert len(json.dumps(prov)) < 4000  # the same whatever the number of packets
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["packets_read"] == aggregate and report["packets"] == len(files)


def test_dry_run_streams_and_counts_what_a_real_run_reports(tmp_path: Path, monkeypatch) -> None:
    """Regression: --dry-run held every decoded row and packet hash of the night in memory."""
    import json

    from astropipe.ztf import stage

    night = _night_dir(tmp_path)
    params = _stream_params(tmp_path, night, 5)
    held: list[ingest.AlertIngest] = []
    real = stage.ingest_packets

    def spy(*args: object, **kwargs: object) -> ingest.AlertIngest:
        result = real(*args, **kwargs)
        held.append(result)
        return result

    monkeypatch.setattr(stage, "ingest_packets", spy)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr("tempfile.tempdir", None)  # TMPDIR read again
    dry = run(params, dry_run=True)
    assert not (tmp_path / "out").exists() and list(scratch.iterdir()) == []
    (result,) = held
    assert result.collector.alert_rows == [] and result.inputs == []  # streamed, not held
    run(params)
    report = json.loads((tmp_path / "report.json").read_text())
    assert dry["packets"] == report["packets"] == 2 * len(PACKETS)
    assert dry["quarantined"] == report["quarantined"] and len(dry["quarantined"]) == 2
    assert dry["skipped_members"] == report["skipped_members"]
    # every packet decoded is one alert, counted before the candid deduplication
    assert dry["alerts_decoded"] == report["packets"] - len(report["quarantined"]) == 76
    assert report["alerts"] == 35
