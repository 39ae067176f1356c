"""ingest_ztf speed and compute model: cached-schema decoding equals fastavro.reader, and
``compute.scheduler`` decides how packets are decoded (threads never start a process)."""

from __future__ import annotations

import io
import itertools
import random
from pathlib import Path

import fastavro
import pytest

from astropipe.config import compose, find_root
from astropipe.errors import ConfigError, InputFileError
from astropipe.ztf import alerts, ingest
from astropipe.ztf.packets import Packet
from astropipe.ztf.stage import run

ALERTS = Path(__file__).resolve().parents[1] / "data" / "sample" / "ztf" / "alerts"
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


def _params(tmp: Path, scheduler: str, *extra: str) -> dict:
    out = tmp / "out"  # the same paths whatever the scheduler: they are in the provenance
    return compose(
        [
            f"ztf.alerts.path={ALERTS}",
            "ztf.dr.path=null",
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


def test_threads_start_no_process_and_match_synchronous(tmp_path: Path, monkeypatch) -> None:
    run(_params(tmp_path, "synchronous"))
    out = tmp_path / "out"
    before = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    def no_process(*args: object, **kwargs: object) -> None:
        raise AssertionError("compute.scheduler=threads started a process pool")

    used: list[int] = []
    real = ingest.ThreadPoolExecutor

    def threads(max_workers: int) -> object:
        used.append(max_workers)
        return real(max_workers=max_workers)

    monkeypatch.setattr(ingest, "ProcessPoolExecutor", no_process)
    monkeypatch.setattr(ingest, "ThreadPoolExecutor", threads)
    monkeypatch.setattr(ingest, "BATCH_SIZE", 8)  # several batches in flight
    run(_params(tmp_path, "threads"))
    assert used == [2]
    after = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert len(before) > 90 and Path("alerts.parquet") in before
    assert after == before  # tables and every stamp, byte for byte


def test_distributed_is_refused_for_now(tmp_path: Path) -> None:
    params = _params(tmp_path, "distributed", "compute.address=tcp://127.0.0.1:1")
    with pytest.raises(ConfigError, match="^compute.scheduler=distributed: not yet for ingest_ztf"):
        run(params)
    assert not (tmp_path / "out").exists()
