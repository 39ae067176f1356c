"""Decode a stream of alert packets in batches, on the workers of the ``compute`` group.

The main process only streams packets (from files or a night tarball) and hands batches to
:func:`astropipe.compute.workers` (``compute.scheduler``: ``synchronous`` decodes in this
process, ``threads`` in a thread pool of this process, ``processes`` in a process pool,
``distributed`` on the workers of an existing dask cluster), which decode them, write their
cutout stamps, and return compact column lists. Batches are merged in submission order, so the
result is identical whatever the scheduler and the number of workers; at most ``2 × slots``
batches are in flight, which bounds memory.

Workers write the stamps themselves, to the **absolute** cutout directory: on a cluster, every
worker must see that directory under the same path (a shared filesystem). Quarantined packets
travel back in each batch's result (and are logged here, in input order), since a cluster
worker's log never reaches this process.

A packet is either ingested whole (its rows and its stamps) or quarantined whole: it is
decoded, checked (:func:`astropipe.ztf.checks.check_alert`) and its stamps are decompressed
(bounded by :data:`MAX_STAMP_BYTES`) before anything of it is kept.

Stamps are created with ``O_EXCL``, so two packets with the same ``candid`` (possibly in two
worker processes at once) never overwrite each other's file: the second one writes a hidden
side file instead, and :func:`ingest_packets` keeps the stamps of the packet that wins the
``candid`` rule (see :mod:`astropipe.ztf.collector`) once every packet has been read.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from astropipe.compute import ComputeConfig, workers
from astropipe.errors import InputFileError
from astropipe.ztf.alerts import decode_packet
from astropipe.ztf.checks import check_alert
from astropipe.ztf.collector import AlertCollector, AlertMeta, stamp_files
from astropipe.ztf.config import AlertsConfig
from astropipe.ztf.packetlog import PacketLog
from astropipe.ztf.packets import Packet
from astropipe.ztf.spill import AlertSpill

__all__ = ["AlertIngest", "process_batch", "ingest_packets", "MAX_STAMP_BYTES"]

log = logging.getLogger(__name__)

#: Largest decompressed stamp accepted; a ZTF stamp (63×63 float32 FITS) is about 20 kB, and
#: a gzip stream can expand a thousandfold.
MAX_STAMP_BYTES = 16 * 1024 * 1024

# One path component made by stamp_files: never empty, hidden, '.', '..' or with a separator
# (v1.x candids are negative, so a name may start with '-').
_SAFE_PART = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


@dataclass
class AlertIngest:
    """Everything read from the packets: collected rows, quarantine list, input hashes.

    ``inputs`` lists ``(packet name, SHA-256)`` of every packet read, in input order (streamed
    to a :class:`~astropipe.ztf.packetlog.PacketLog` batch by batch when one is given, so it
    does not grow with the night). ``packets`` counts every packet seen (decoded or
    quarantined); ``skipped_members`` lists
    tar members that held no packet (links, devices). ``stamp_sides`` lists ``(final name,
    packet sha256, side name)`` for stamps whose final name was already taken by a packet with
    the same ``candid``.
    """

    collector: AlertCollector
    quarantined: list[dict[str, str]] = field(default_factory=list)
    inputs: list[tuple[str, str]] = field(default_factory=list)
    packets: int = 0
    stamps_written: int = 0
    skipped_members: list[dict[str, str]] = field(default_factory=list)
    stamp_sides: list[tuple[str, str, str]] = field(default_factory=list)
    duplicates: list[dict[str, object]] = field(default_factory=list)

    def merge(self, other: AlertIngest) -> None:
        """Append ``other`` (the next batch in input order) to this result."""
        self.collector.merge(other.collector)
        self.quarantined.extend(other.quarantined)
        self.inputs.extend(other.inputs)
        self.packets += other.packets
        self.skipped_members.extend(other.skipped_members)
        self.stamps_written += other.stamps_written
        self.stamp_sides.extend(other.stamp_sides)


def _stamp_bytes(packet: str, name: str, data: bytes) -> bytes:
    """The file content of one stamp: gunzipped and checked FITS, or the JPEG as is."""
    if data[:2] != b"\x1f\x8b":
        return data
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, MAX_STAMP_BYTES + 1)
    except zlib.error as exc:
        raise InputFileError(
            f"{packet}: cutout {name} is not valid gzip ({exc}); the packet is corrupt — "
            "re-fetch it."
        ) from None
    if len(out) > MAX_STAMP_BYTES:
        raise InputFileError(
            f"{packet}: cutout {name} expands to more than {MAX_STAMP_BYTES} bytes (a ZTF "
            "stamp is about 20 kB); the packet is corrupt — re-fetch it."
        )
    if not d.eof or not out.startswith(b"SIMPLE  ="):
        raise InputFileError(
            f"{packet}: cutout {name} is {'truncated' if not d.eof else 'not a FITS image'} "
            "after gunzip; the packet is corrupt — re-fetch it."
        )
    return out


def _safe_dest(cutout_dir: Path, rel: str) -> Path:
    # stamp_files builds names from checked ids only; this guards the invariant anyway
    parts = rel.split("/")
    if len(parts) != 2 or not all(_SAFE_PART.fullmatch(p) for p in parts):
        raise InputFileError(f"cutout name {rel!r} is not <id>/<candid>_<kind>; not written.")
    return cutout_dir / parts[0] / parts[1]


def _create(dest: Path, data: bytes) -> bool:
    """Write ``data`` to a new file ``dest``; False when ``dest`` already exists."""
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return True


def _side_name(rel: str, sha256: str) -> str:
    folder, name = rel.split("/")
    return f"{folder}/.{name}.{sha256[:16]}.dup"


def process_batch(
    packets: list[Packet], *, keep_jpeg: bool, cutout_dir: Path | None, fail: bool
) -> AlertIngest:
    """Decode ``packets``, write their stamps under ``cutout_dir``, return the rows.

    Runs on a worker (possibly of a cluster): ``cutout_dir`` must be absolute, and the
    quarantined packets are returned in the result, not logged.

    Raises
    ------
    InputFileError
        For the first unreadable, undecodable or inconsistent packet when ``fail`` is true;
        otherwise it is quarantined (listed with its reason) and the batch goes on.
    """
    result = AlertIngest(AlertCollector(keep_jpeg=keep_jpeg, stamps=cutout_dir is not None))
    for packet in packets:
        result.packets += 1
        try:
            if packet.problem is not None:
                raise InputFileError(f"{packet.name}: {packet.problem}.")
            sha = packet.sha256
            result.inputs.append((packet.name, sha))
            alert = decode_packet(packet)
            check_alert(alert)
            files = []
            if cutout_dir is not None:
                stamps, _ = stamp_files(alert.record, keep_jpeg=keep_jpeg)
                files = [
                    (_safe_dest(cutout_dir, n), n, _stamp_bytes(packet.name, n, d))
                    for n, d in stamps
                ]
        except InputFileError as exc:
            if fail:
                raise
            result.quarantined.append({"file": packet.name, "reason": str(exc)})
            continue
        result.collector.add(alert, sha256=sha)
        if cutout_dir is None:
            continue
        for dest, rel, data in files:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not _create(dest, data):  # same candid seen before: keep both until resolved
                side = _side_name(rel, sha)
                (cutout_dir / side).write_bytes(data)
                result.stamp_sides.append((rel, sha, side))
        result.stamps_written += len(files)
    return result


def _resolve_stamps(total: AlertIngest, cutout_dir: Path) -> None:
    """Leave exactly the stamps of each ``candid``'s winning packet under their final names."""
    col = total.collector
    groups: dict[object, list[int]] = {}
    for i, row in enumerate(col.alert_rows):
        groups.setdefault(row["candid"], []).append(i)
    winners = set(col.winners())
    dups = []
    for idx in groups.values():
        if len(idx) > 1:
            (win,) = [i for i in idx if i in winners]
            dups.append((col.meta[win], [col.meta[i] for i in idx]))
    _resolve_groups(dups, total.stamp_sides, cutout_dir)
    total.stamp_sides.clear()
    total.stamps_written = sum(len(col.meta[i].stamps) for i in winners)


def _resolve_groups(
    dups: list[tuple[AlertMeta, list[AlertMeta]]],
    stamp_sides: list[tuple[str, str, str]],
    cutout_dir: Path,
) -> None:
    """Per duplicated ``candid`` (winner, every packet): keep only the winner's stamps."""
    sides: dict[str, list[tuple[str, str]]] = {}
    for final, sha, side in stamp_sides:
        sides.setdefault(final, []).append((sha, side))
    for win, metas in dups:
        win_names = set(win.stamps)
        names = sorted({n for m in metas for n in m.stamps})
        for name in names:
            pending = sides.pop(name, [])
            if name in win_names:
                src = next((s for sha, s in pending if sha == win.sha256), None)
                if src is not None:  # the winner came second: its bytes are in a side file
                    os.replace(cutout_dir / src, cutout_dir / name)
                    pending = [(sha, s) for sha, s in pending if s != src]
            else:  # only losers had this stamp
                (cutout_dir / name).unlink(missing_ok=True)
            for _, s in pending:
                (cutout_dir / s).unlink(missing_ok=True)
    for pending in sides.values():  # pragma: no cover - every side belongs to a group
        for _, s in pending:
            (cutout_dir / s).unlink(missing_ok=True)
    for folder in {n.split("/")[0] for n, _, _ in stamp_sides}:
        try:  # a loser's objectId folder left empty
            (cutout_dir / folder).rmdir()
        except OSError:
            pass


def _batched(packets: Iterable[Packet], size: int) -> Iterator[list[Packet]]:
    if size < 1:
        raise ValueError(f"batch size {size} < 1")
    it = iter(packets)
    while batch := list(itertools.islice(it, size)):
        yield batch


def ingest_packets(
    packets: Iterable[Packet],
    *,
    keep_jpeg: bool,
    cutout_dir: Path | None,
    fail: bool,
    compute: ComputeConfig | None = None,
    batch_size: int = AlertsConfig.batch_size,
    sink: AlertSpill | None = None,
    packet_log: PacketLog | None = None,
) -> AlertIngest:
    """Decode every packet, batch by batch, on the workers ``compute`` configures.

    Parameters
    ----------
    packets
        The packet stream (consumed lazily).
    keep_jpeg, cutout_dir, fail
        See :func:`process_batch`; ``cutout_dir`` is made absolute here (cluster workers run
        in other working directories and must see it under the same path).
    compute
        Where batches are decoded (:func:`astropipe.compute.workers`); ``None``: synchronous,
        in this process. Results do not depend on it.
    batch_size
        Packets per batch (``ztf.alerts.batch_size``, whose default this is); at most
        ``2 × slots`` batches are in flight. Outputs do not depend on it.
    sink
        Streaming: each batch's rows go to this :class:`~astropipe.ztf.spill.AlertSpill` as
        soon as it is merged, and the returned collector holds only the counts; duplicates
        are resolved from the spill. Without it, the returned collector holds every row.
    packet_log
        Each batch's ``(packet, SHA-256)`` pairs go to this log as soon as it is merged, and
        the returned ``inputs`` stays empty. Without it, ``inputs`` lists every packet read.
    """
    total = AlertIngest(AlertCollector(keep_jpeg=keep_jpeg, stamps=cutout_dir is not None))
    if cutout_dir is not None:
        cutout_dir = Path(os.path.abspath(cutout_dir))
    kwargs = {"keep_jpeg": keep_jpeg, "cutout_dir": cutout_dir, "fail": fail}
    batches = _batched(packets, batch_size)
    with workers(compute or ComputeConfig(scheduler="synchronous")) as pool:
        for part in pool.map(process_batch, batches, **kwargs):
            for q in part.quarantined:  # logged here: a cluster worker's log is not ours
                log.warning("quarantined %s", q["reason"])
            if sink is not None:  # rows to disk now; keep only the counts
                sink.add(part.collector)
                part.collector = AlertCollector(keep_jpeg=keep_jpeg, stamps=cutout_dir is not None)
            if packet_log is not None:  # the per-packet provenance to disk now
                packet_log.add(part.inputs)
                part.inputs = []
            total.merge(part)
    if sink is not None:
        total.collector.jpeg_skipped = sink.jpeg_skipped
        total.collector.lc_skipped_no_object = sink.lc_skipped_no_object
        total.collector.versions = dict(sink.versions)
    duplicates = sink.duplicates() if sink is not None else total.collector.duplicates()
    for dup in duplicates:
        log.warning(
            "candid %s in %d packets%s: kept %s (newest schema, then smallest SHA-256), dropped %s",
            dup["candid"],
            1 + len(dup["dropped"]),
            "" if dup["same_content"] else " with different content",
            dup["kept"],
            ", ".join(dup["dropped"]),
        )
    total.duplicates = duplicates
    if cutout_dir is not None and sink is not None:
        _resolve_groups(sink.duplicate_metas(), total.stamp_sides, cutout_dir)
        total.stamp_sides.clear()
        total.stamps_written = sink.stamps_kept()
    elif cutout_dir is not None:
        _resolve_stamps(total, cutout_dir)
    return total
