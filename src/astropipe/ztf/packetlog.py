"""The per-packet provenance of a night, streamed to ``packets.parquet``.

Every packet read (decoded or quarantined, not those left unread) has its name and the SHA-256
of its bytes recorded. A night holds 10^5–10^6 packets, so that list is not kept in memory nor
written into the other tables' Parquet footers (about 180 bytes per packet each): each decoded
batch's pairs are appended to ``packets.parquet`` (columns ``packet``, ``sha256``, in input
order, row groups of :data:`PACKET_GROUP_ROWS` rows) as soon as the batch is merged, and the
footers of ``alerts.parquet`` and ``lightcurves.parquet`` record only the aggregate:

- ``count``: the number of rows of ``packets.parquet``;
- ``sha256``: one SHA-256 over the rows in order, each fed as ``<packet>\\t<sha256>\\n``
  (UTF-8; names are printable, control characters escaped, so the lines are unambiguous).

:func:`packets_digest` recomputes the aggregate from the table, so a reader can check one
against the other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from astropipe.io.tables import ParquetRowGroups

__all__ = ["PacketLog", "PACKETS_SCHEMA", "PACKET_GROUP_ROWS", "packets_digest", "packet_lines"]

#: Rows per row group of ``packets.parquet`` (~150 bytes a row in memory: ~10 MB).
PACKET_GROUP_ROWS = 1 << 16

#: Columns of ``packets.parquet``.
PACKETS_SCHEMA = pa.schema([pa.field("packet", pa.string()), pa.field("sha256", pa.string())])


def packet_lines(pairs: Iterable[tuple[str, str]]) -> bytes:
    """The bytes the aggregate SHA-256 is fed for ``(packet, sha256)`` pairs, in order."""
    return "".join(f"{name}\t{sha}\n" for name, sha in pairs).encode()


class PacketLog:
    """Append ``(packet, sha256)`` pairs to ``packets.parquet`` and keep their running digest.

    Parameters
    ----------
    path
        Where the table goes (written through a temporary sibling, renamed by :meth:`close`).
    meta
        The file metadata (:func:`astropipe.io.tables.file_metadata`).
    name
        How the aggregate names the table (the configured, repository-relative path).
    """

    def __init__(self, path: Path, meta: Mapping[bytes, bytes], *, name: str) -> None:
        self._out = ParquetRowGroups(path, PACKETS_SCHEMA, meta, rows=PACKET_GROUP_ROWS)
        self._hash = hashlib.sha256()
        self._name = name
        self.count = 0

    def add(self, pairs: list[tuple[str, str]]) -> None:
        """Append one batch's pairs (in input order, after the previous batches')."""
        if not pairs:
            return
        names, shas = zip(*pairs, strict=True)
        self._out.write(
            pa.Table.from_arrays(
                [pa.array(names, pa.string()), pa.array(shas, pa.string())],
                schema=PACKETS_SCHEMA,
            )
        )
        self._hash.update(packet_lines(pairs))
        self.count += len(pairs)

    def close(self) -> dict[str, Any]:
        """Write the table; return the aggregate recorded in the other tables' provenance."""
        self._out.close()
        return {"table": self._name, "count": self.count, "sha256": self._hash.hexdigest()}

    def abort(self) -> None:
        """Drop the unfinished table (after an error)."""
        self._out.abort()


def packets_digest(path: str | Path) -> dict[str, Any]:
    """``count`` and ``sha256`` of a ``packets.parquet``, as :meth:`PacketLog.close` gives them.

    Reads one row group at a time (bounded memory).
    """
    digest = hashlib.sha256()
    count = 0
    table = pq.ParquetFile(path)
    for i in range(table.num_row_groups):
        group = table.read_row_group(i, columns=["packet", "sha256"])
        pairs = list(zip(group["packet"].to_pylist(), group["sha256"].to_pylist(), strict=True))
        digest.update(packet_lines(pairs))
        count += len(pairs)
    return {"count": count, "sha256": digest.hexdigest()}
