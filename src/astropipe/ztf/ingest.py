"""Decode a stream of alert packets in batches, in parallel processes when asked.

The main process only streams packets (from files or a night tarball) and hands batches to
worker processes, which decode them, write their cutout stamps, and return compact column
lists. Batches are merged in submission order, so the result is identical whatever the number
of workers; at most ``2 × workers`` batches are in flight, which bounds memory.
"""

from __future__ import annotations

import gzip
import itertools
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from astropipe.errors import InputFileError
from astropipe.ztf.alerts import decode_packet
from astropipe.ztf.collector import AlertCollector
from astropipe.ztf.packets import Packet

__all__ = ["AlertIngest", "process_batch", "ingest_packets", "BATCH_SIZE"]

log = logging.getLogger(__name__)

#: Packets per batch handed to a worker (about 20 MB of v4 packets).
BATCH_SIZE = 256


@dataclass
class AlertIngest:
    """Everything read from the packets: collected rows, quarantine list, input hashes."""

    collector: AlertCollector
    quarantined: list[dict[str, str]] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)
    stamps_written: int = 0

    def merge(self, other: AlertIngest) -> None:
        """Append ``other`` (the next batch in input order) to this result."""
        self.collector.merge(other.collector)
        self.quarantined.extend(other.quarantined)
        self.inputs.update(other.inputs)
        self.stamps_written += other.stamps_written


def _write_stamp(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)


def process_batch(
    packets: list[Packet], *, keep_jpeg: bool, cutout_dir: Path | None, fail: bool
) -> AlertIngest:
    """Decode ``packets``, write their stamps under ``cutout_dir``, return the rows.

    Raises
    ------
    InputFileError
        For the first undecodable packet when ``fail`` is true; otherwise it is quarantined.
    """
    result = AlertIngest(AlertCollector(keep_jpeg=keep_jpeg, stamps=cutout_dir is not None))
    for packet in packets:
        result.inputs[packet.name] = packet.sha256
        try:
            alert = decode_packet(packet)
        except InputFileError as exc:
            if fail:
                raise
            log.warning("quarantined %s", exc)
            result.quarantined.append({"file": packet.name, "reason": str(exc)})
            continue
        stamps = result.collector.add(alert)
        if cutout_dir is not None:
            for name, data in stamps:
                _write_stamp(cutout_dir / name, data)
            result.stamps_written += len(stamps)
    return result


def _batched(packets: Iterable[Packet], size: int) -> Iterator[list[Packet]]:
    it = iter(packets)
    while batch := list(itertools.islice(it, size)):
        yield batch


def ingest_packets(
    packets: Iterable[Packet],
    *,
    keep_jpeg: bool,
    cutout_dir: Path | None,
    fail: bool,
    workers: int = 1,
) -> AlertIngest:
    """Decode every packet, in ``workers`` processes (1: in this process).

    Parameters
    ----------
    packets
        The packet stream (consumed lazily).
    keep_jpeg, cutout_dir, fail
        See :func:`process_batch`.
    workers
        Number of decoding processes; results do not depend on it.
    """
    total = AlertIngest(AlertCollector(keep_jpeg=keep_jpeg, stamps=cutout_dir is not None))
    kwargs = {"keep_jpeg": keep_jpeg, "cutout_dir": cutout_dir, "fail": fail}
    batches = _batched(packets, BATCH_SIZE)
    if workers <= 1:
        for batch in batches:
            total.merge(process_batch(batch, **kwargs))
        return total
    with ProcessPoolExecutor(max_workers=workers) as pool:
        in_flight: deque[Future[AlertIngest]] = deque()
        for batch in batches:
            in_flight.append(pool.submit(process_batch, batch, **kwargs))
            if len(in_flight) >= 2 * workers:
                total.merge(in_flight.popleft().result())
        while in_flight:
            total.merge(in_flight.popleft().result())
    return total
