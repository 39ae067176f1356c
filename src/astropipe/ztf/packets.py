"""Find and read ZTF alert packets: single ``.avro`` files, directories, and night tarballs.

A night of the public ZTF alert archive is one ``ztf_public_YYYYMMDD.tar.gz`` holding one Avro
Object Container file per alert. Tarballs are streamed member by member (``tarfile`` mode
``r|*``), never extracted to disk, so a night of tens of gigabytes needs no scratch space.

Names taken from the input (tar member names, file names) only ever label a packet; they are
never joined to a path. A packet that cannot be read — larger than ``max_bytes``, or a file
the OS refuses to open — is still yielded, with its ``problem`` set and no bytes, so the
caller quarantines it and goes on. Tar members that are links, devices or FIFOs carry no
packet: they are skipped, logged and counted in a :class:`ReadStats`.
"""

from __future__ import annotations

import logging
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from astropipe.errors import InputFileError, MissingInputError
from astropipe.provenance import relpath, sha256_bytes

__all__ = [
    "Packet",
    "ReadStats",
    "iter_packets",
    "is_night_tarball",
    "printable",
    "NIGHT_TARBALL",
    "MAX_PACKET_BYTES",
]

log = logging.getLogger(__name__)

#: Name of a night tarball in the ZTF public alert archive.
NIGHT_TARBALL = re.compile(r"^ztf_(public|partnership)_\d{8}(_programid\d+)?\.tar(\.gz)?$")

#: Default bound on one packet's size (``ztf.alerts.max_member_bytes``); real packets,
#: cutouts included, are about 100 kB.
MAX_PACKET_BYTES = 64 * 1024 * 1024

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")

_TAR_KINDS = {
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hard link",
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "fifo",
}


@dataclass(frozen=True, slots=True)
class Packet:
    """The raw bytes of one alert packet and where they came from.

    Attributes
    ----------
    name
        Repository-relative path, or ``<tarball>!<member>`` for a tarball member; printable
        (control characters escaped), used as a label only, never as a path.
    data
        The packet bytes (an Avro Object Container file); empty when ``problem`` is set.
    problem
        Why the bytes could not be read (too large, permission denied); such a packet is
        quarantined.
    """

    name: str
    data: bytes
    problem: str | None = None

    @property
    def sha256(self) -> str:
        """SHA-256 of the packet bytes."""
        return sha256_bytes(self.data)


@dataclass
class ReadStats:
    """What the packet reader skipped: tar members that hold no packet (links, devices)."""

    skipped: list[dict[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of skipped members per kind, sorted by kind."""
        out: dict[str, int] = {}
        for s in self.skipped:
            out[s["kind"]] = out.get(s["kind"], 0) + 1
        return dict(sorted(out.items()))


def printable(name: str) -> str:
    """``name`` with control characters escaped, so a label from data stays on one line."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def is_night_tarball(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` names a tar archive (a ZTF night or any ``.tar[.gz]``)."""
    return str(path).endswith(_TAR_SUFFIXES)


def _too_large(size: int, max_bytes: int) -> str:
    return (
        f"{size} bytes, larger than ztf.alerts.max_member_bytes={max_bytes} (a ZTF packet is "
        "about 100 kB); not read — raise the bound if this packet is genuine"
    )


def _iter_tarball(path: Path, *, max_bytes: int, stats: ReadStats | None) -> Iterator[Packet]:
    base = relpath(path)
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                # tarfile keeps every member's header (~0.5 kB) for random access, which a
                # stream never needs: without this, memory grows with the night
                tar.members.clear()
                name = f"{base}!{printable(member.name)}"
                kind = _TAR_KINDS.get(member.type)
                if kind is not None:  # holds no bytes of its own: never followed
                    log.warning("skipped %s: a %s, not a packet", name, kind)
                    if stats is not None:
                        stats.skipped.append({"file": name, "kind": kind})
                    continue
                if not member.isfile() or not member.name.endswith(".avro"):
                    continue
                if member.size > max_bytes:
                    # the stream skips the member's bytes block by block: never in memory
                    yield Packet(name, b"", problem=_too_large(member.size, max_bytes))
                    continue
                fh = tar.extractfile(member)
                if fh is None:  # pragma: no cover - isfile() members always have data
                    continue
                yield Packet(name, fh.read())
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        # ValueError: tarfile's header parsers raise it for some corrupt numeric fields
        raise InputFileError(
            f"{path}: not a readable tar archive ({type(exc).__name__}: {exc}); re-download "
            "the night tarball or point ztf.alerts.path at a directory of .avro files."
        ) from exc


def _read_file(path: Path, *, max_bytes: int) -> Packet:
    name = printable(relpath(path))
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes:
                return Packet(name, b"", problem=_too_large(size, max_bytes))
            data = fh.read(max_bytes + 1)  # the file may grow after the stat
    except OSError as exc:
        return Packet(
            name,
            b"",
            problem=f"cannot read ({exc.strerror or type(exc).__name__}); fix its "
            "permissions or remove it",
        )
    if len(data) > max_bytes:
        return Packet(name, b"", problem=_too_large(len(data), max_bytes))
    return Packet(name, data)


def iter_packets(
    path: str | os.PathLike[str],
    *,
    limit: int | None = None,
    max_bytes: int = MAX_PACKET_BYTES,
    stats: ReadStats | None = None,
) -> Iterator[Packet]:
    """Yield alert packets under ``path`` in a stable order.

    Parameters
    ----------
    path
        A directory (every ``*.avro`` and night tarball below it, sorted by path), a single
        ``.avro`` file, or a tarball.
    limit
        Stop after this many packets.
    max_bytes
        Larger packets are not read: they are yielded with ``problem`` set.
    stats
        Collects the tar members skipped because they are links, devices or FIFOs.

    Raises
    ------
    MissingInputError
        When ``path`` does not exist or holds no packets.
    InputFileError
        When a tarball is not a readable tar archive.
    """
    root = Path(path)
    if not root.exists():
        raise MissingInputError(
            f"{root}: no such file or directory; set ztf.alerts.path to a directory of .avro "
            "files or a ztf_public_YYYYMMDD.tar.gz night."
        )
    if root.is_dir():
        sources = sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and (p.suffix == ".avro" or is_night_tarball(p))
        )
    else:
        sources = [root]
    count = 0
    for src in sources:
        packets = (
            _iter_tarball(src, max_bytes=max_bytes, stats=stats)
            if is_night_tarball(src)
            else iter([_read_file(src, max_bytes=max_bytes)])
        )
        for packet in packets:
            if limit is not None and count >= limit:
                return
            count += 1
            yield packet
    if count == 0:
        raise MissingInputError(
            f"{root}: no alert packets found (expected *.avro files or a night tarball); "
            "check ztf.alerts.path."
        )
