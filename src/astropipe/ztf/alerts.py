"""Decode ZTF alert packets (schema v1.0 → v4.02); :mod:`astropipe.ztf.collector` tabulates them.

The packet format is documented in the ZTF Avro Alert Schema
(https://zwickytransientfacility.github.io/ztf-avro-alert/schema.html). Notes that matter here:

- every packet embeds its writer schema; ``schemavsn`` is a record field from v2.0 on, and v1.x
  packets are versioned from the writer schema's ``version`` attribute (v1.0 only names it in
  the schema ``doc``);
- v1.0/v1.1 packets (2016 pre-survey tests) have no ``objectId``, an ``alertId`` and a negative
  ``candid``; their cutouts are JPEG, later ones gzip-compressed FITS;
- ``prv_candidates`` mixes detections and upper limits: a limit has ``candid`` null and only
  ``diffmaglim`` set.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fastavro
import pyarrow as pa

from astropipe.errors import InputFileError
from astropipe.ztf.packets import Packet

__all__ = ["JD_MJD_OFFSET", "DecodedAlert", "decode_packet"]

#: MJD = JD − 2400000.5
JD_MJD_OFFSET = 2400000.5

_VERSION_IN_DOC = re.compile(r"\bv(\d+\.\d+)\b")

_AVRO_TO_ARROW = {
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "string": pa.string(),
    "boolean": pa.bool_(),
    "bytes": pa.binary(),
}
_TYPES_BY_VERSION: dict[str, dict[str, pa.DataType]] = {}


@dataclass(slots=True)
class DecodedAlert:
    """One decoded packet: the raw record plus what the writer schema tells about it."""

    packet: str
    schemavsn: str
    record: dict[str, Any]
    candidate_types: dict[str, pa.DataType]


def _arrow_type(avro_type: Any) -> pa.DataType | None:
    if isinstance(avro_type, list):
        non_null = [t for t in avro_type if t != "null"]
        return _arrow_type(non_null[0]) if len(non_null) == 1 else None
    if isinstance(avro_type, dict):
        return _arrow_type(avro_type.get("type"))
    return _AVRO_TO_ARROW.get(avro_type) if isinstance(avro_type, str) else None


def _schema_version(record: Mapping[str, Any], schema: Mapping[str, Any]) -> str:
    if record.get("schemavsn"):
        return str(record["schemavsn"])
    if schema.get("version"):
        return str(schema["version"])
    match = _VERSION_IN_DOC.search(str(schema.get("doc", "")))
    return match.group(1) if match else "unknown"


def _candidate_types(schema: Mapping[str, Any]) -> dict[str, pa.DataType]:
    for fld in schema.get("fields", []):
        if fld["name"] == "candidate" and isinstance(fld["type"], dict):
            out = {}
            for sub in fld["type"].get("fields", []):
                tp = _arrow_type(sub["type"])
                if tp is not None:
                    out[sub["name"]] = tp
            return out
    return {}


def decode_packet(packet: Packet) -> DecodedAlert:
    """Decode one packet (an Avro Object Container file holding one alert).

    Raises
    ------
    InputFileError
        When the bytes are not an Avro container with one ZTF alert record (the message names
        the packet and the reason).
    """
    if not packet.data.startswith(b"Obj\x01"):
        raise InputFileError(
            f"{packet.name}: not an Avro Object Container file (no 'Obj\\x01' magic, so no "
            "embedded schema); this is a bare datum or another format — re-fetch the packet."
        )
    try:
        reader = fastavro.reader(io.BytesIO(packet.data))
        schema = reader.writer_schema
        records = list(reader)
    except Exception as exc:  # fastavro raises many types for corrupt input
        raise InputFileError(
            f"{packet.name}: Avro decoding failed ({type(exc).__name__}: {exc}); the packet is "
            "truncated or corrupt — re-fetch it."
        ) from exc
    if len(records) != 1 or "candidate" not in records[0]:
        raise InputFileError(
            f"{packet.name}: expected one ZTF alert record with a 'candidate', found "
            f"{len(records)} record(s); is this a ZTF alert packet?"
        )
    record = records[0]
    version = _schema_version(record, schema)
    types = _TYPES_BY_VERSION.get(version)
    if types is None:  # a schema version is a fixed contract: map its types once
        types = _TYPES_BY_VERSION.setdefault(version, _candidate_types(schema))
    return DecodedAlert(packet.name, version, record, types)
