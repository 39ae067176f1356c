"""Find and read ZTF alert packets: single ``.avro`` files, directories, and night tarballs.

A night of the public ZTF alert archive is one ``ztf_public_YYYYMMDD.tar.gz`` holding one Avro
Object Container file per alert. Tarballs are streamed member by member (``tarfile`` mode
``r|*``), never extracted to disk, so a night of tens of gigabytes needs no scratch space.
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from astropipe.errors import InputFileError, MissingInputError
from astropipe.provenance import relpath

__all__ = ["Packet", "iter_packets", "is_night_tarball", "NIGHT_TARBALL"]

#: Name of a night tarball in the ZTF public alert archive.
NIGHT_TARBALL = re.compile(r"^ztf_(public|partnership)_\d{8}(_programid\d+)?\.tar(\.gz)?$")

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")


@dataclass(frozen=True, slots=True)
class Packet:
    """The raw bytes of one alert packet and where they came from.

    Attributes
    ----------
    name
        Repository-relative path, or ``<tarball>!<member>`` for a tarball member.
    data
        The packet bytes (an Avro Object Container file).
    """

    name: str
    data: bytes

    @property
    def sha256(self) -> str:
        """SHA-256 of the packet bytes."""
        return hashlib.sha256(self.data).hexdigest()


def is_night_tarball(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` names a tar archive (a ZTF night or any ``.tar[.gz]``)."""
    return str(path).endswith(_TAR_SUFFIXES)


def _iter_tarball(path: Path) -> Iterator[Packet]:
    base = relpath(path)
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                if not member.isfile() or not member.name.endswith(".avro"):
                    continue
                fh = tar.extractfile(member)
                if fh is None:  # pragma: no cover - isfile() members always have data
                    continue
                yield Packet(f"{base}!{member.name}", fh.read())
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InputFileError(
            f"{path}: not a readable tar archive ({exc}); re-download the night tarball "
            "or point ztf.alerts.path at a directory of .avro files."
        ) from exc


def iter_packets(path: str | os.PathLike[str], *, limit: int | None = None) -> Iterator[Packet]:
    """Yield alert packets under ``path`` in a stable order.

    Parameters
    ----------
    path
        A directory (every ``*.avro`` and night tarball below it, sorted by path), a single
        ``.avro`` file, or a tarball.
    limit
        Stop after this many packets.

    Raises
    ------
    MissingInputError
        When ``path`` does not exist or holds no packets.
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
            _iter_tarball(src)
            if is_night_tarball(src)
            else iter([Packet(relpath(src), src.read_bytes())])
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
