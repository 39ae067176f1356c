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

Because the schema travels with the packet, a corrupt or hostile packet brings its own schema.
Before any record is read, the writer schema must be a record with a ``candidate`` field, use
the ``null`` codec (every ZTF packet does; a compressed block could expand without bound), and
have no array whose items can be encoded in zero bytes: such an array lets a corrupt item count
of 2^62 spin forever on no input. Every other type consumes at least one byte per value, so
decoding a packet is bounded by its size. At most two records are read.

Speed: a night holds 10^5–10^6 packets but only a dozen distinct writer schemas, so each schema
text is parsed once (:func:`fastavro.parse_schema`) and cached. A packet whose container is the
plain ZTF layout — the header (magic, metadata map, 16-byte sync marker), then exactly one data
block holding one record, ending in the header's sync marker and nothing after it (Avro 1.11
specification, "Object Container Files") — is decoded with :func:`fastavro.schemaless_reader`
on the block bytes, and the record must consume the block exactly. Any other layout (several
blocks, counts other than one, trailing bytes, a bad sync marker, a decoding error) takes the
general :func:`fastavro.reader` path, which gives the same record or the same refusal.
"""

from __future__ import annotations

import io
import itertools
import json
import re
from collections.abc import Iterator, Mapping
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
_SCHEMA_INFO: dict[str, tuple[str | None, dict[str, pa.DataType]]] = {}
# schema text (bytes) -> (problem, candidate types, parsed writer schema, schema as read)
_FAST_SCHEMAS: dict[bytes, tuple[str | None, dict[str, pa.DataType], Any, Any]] = {}
#: Distinct writer schemas remembered (ZTF has used about a dozen).
_SCHEMA_CACHE_SIZE = 64


@dataclass(slots=True)
class DecodedAlert:
    """One decoded packet: the raw record plus what the writer schema tells about it."""

    packet: str
    schemavsn: str
    record: dict[str, Any]
    candidate_types: dict[str, pa.DataType]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no message"


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


def _zero_size(tp: Any, named: Mapping[str, Any], seen: frozenset[str] = frozenset()) -> bool:
    """True when a value of Avro type ``tp`` can be encoded in zero bytes."""
    if isinstance(tp, str):
        if tp == "null":
            return True
        if tp in named and tp not in seen:
            return _zero_size(named[tp], named, seen | {tp})
        return False  # every other primitive, and unions/arrays/maps, take >= 1 byte
    if isinstance(tp, dict):
        kind = tp.get("type")
        if kind in ("record", "error"):
            name = str(tp.get("name"))
            fields = tp.get("fields") or []
            return all(_zero_size(f.get("type"), named, seen | {name}) for f in fields)
        if kind == "fixed":
            return tp.get("size") == 0
        if kind in ("array", "map", "enum"):
            return False
        return _zero_size(kind, named, seen)
    return False  # a union: its branch index takes >= 1 byte


def _walk(tp: Any) -> Iterator[Any]:
    """Every type node below ``tp`` (named references are not followed)."""
    yield tp
    if isinstance(tp, list):
        for t in tp:
            yield from _walk(t)
    elif isinstance(tp, dict):
        for f in tp.get("fields", []) if isinstance(tp.get("fields"), list) else []:
            if isinstance(f, dict):
                yield from _walk(f.get("type"))
        for key in ("items", "values"):
            if key in tp:
                yield from _walk(tp[key])
        if isinstance(tp.get("type"), (dict, list)):
            yield from _walk(tp["type"])


def _schema_problem(schema: Any, codec: str) -> str | None:
    """Why the writer ``schema`` cannot be a ZTF alert schema safe to decode, or None."""
    if codec != "null":
        return f"codec {codec!r} (ZTF packets are written uncompressed, codec 'null')"
    if not isinstance(schema, dict) or schema.get("type") != "record":
        kind = schema.get("type") if isinstance(schema, dict) else schema
        return f"writer schema is {str(kind)[:40]!r}, not a record"
    names = [f.get("name") for f in schema.get("fields", []) if isinstance(f, dict)]
    if "candidate" not in names:
        return "writer schema has no 'candidate' field"
    nodes = list(_walk(schema))
    named: dict[str, Any] = {}
    for n in nodes:
        if isinstance(n, dict) and n.get("type") in ("record", "error", "fixed", "enum"):
            named[str(n.get("name"))] = n
            named[f"{n.get('namespace')}.{n.get('name')}"] = n
    for node in nodes:
        if isinstance(node, dict) and node.get("type") == "array":
            if _zero_size(node.get("items"), named):
                return "writer schema has an array of zero-byte items (decoding could not end)"
    return None


def _schema_info(reader: Any) -> tuple[str | None, dict[str, pa.DataType]]:
    """The problem of the reader's writer schema (or None) and its candidate column types.

    Cached on the schema text, not on the version a packet claims: a corrupt packet claiming
    "4.02" must not decide the column types of the genuine 4.02 packets read after it.
    """
    key = str(reader.metadata.get("avro.schema", ""))
    info = _SCHEMA_INFO.get(key)
    if info is None:
        problem = _schema_problem(
            reader.writer_schema, str(reader.metadata.get("avro.codec", "null"))
        )
        info = (problem, {} if problem else _candidate_types(reader.writer_schema))
        if len(_SCHEMA_INFO) < _SCHEMA_CACHE_SIZE:  # a stream of corrupt schemas stays bounded
            _SCHEMA_INFO[key] = info
    return info


class _NotPlain(Exception):
    """The container is not the plain one-block layout: use the general reader."""


def _long(data: bytes, pos: int) -> tuple[int, int]:
    """Avro ``long`` (zig-zag varint, at most 10 bytes) at ``pos``; the value and the end."""
    acc = shift = 0
    for i in range(pos, min(pos + 10, len(data))):
        b = data[i]
        acc |= (b & 0x7F) << shift
        if not b & 0x80:
            return (acc >> 1) ^ -(acc & 1), i + 1
        shift += 7
    raise _NotPlain


def _plain_container(data: bytes) -> tuple[dict[str, bytes], bytes]:
    """Metadata and the one data block of a plain one-record container (else ``_NotPlain``)."""
    pos = 4  # after b"Obj\x01"
    meta: dict[str, bytes] = {}
    while True:  # the metadata map: blocks of (string key, bytes value), 0 ends it
        count, pos = _long(data, pos)
        if count == 0:
            break
        if count < 0:  # a negative count is followed by the block's size in bytes
            count = -count
            _, pos = _long(data, pos)
        for _ in range(count):
            for is_key in (True, False):
                n, pos = _long(data, pos)
                if n < 0 or pos + n > len(data):
                    raise _NotPlain
                value = data[pos : pos + n]
                pos += n
                if is_key:
                    key = value.decode("utf-8", "strict")
                else:
                    meta[key] = value
    sync = data[pos : pos + 16]
    pos += 16
    count, pos = _long(data, pos)
    size, pos = _long(data, pos)
    end = pos + size
    if count != 1 or size < 1 or len(sync) != 16 or data[end : end + 16] != sync:
        raise _NotPlain
    if end + 16 != len(data):  # more blocks (or garbage) follow
        raise _NotPlain
    return meta, data[pos:end]


def _fast_schema(text: bytes) -> tuple[str | None, dict[str, pa.DataType], Any, Any]:
    info = _FAST_SCHEMAS.get(text)
    if info is None:
        # as fastavro.reader parses a writer schema (the checks see the same dict) ...
        schema = fastavro.parse_schema(
            json.loads(text.decode()), {}, _write_hint=False, _force=True
        )
        problem = _schema_problem(schema, "null")
        # ... and once more with the "parsed" hint, without which schemaless_reader would
        # parse it again for every packet
        parsed = None if problem else fastavro.parse_schema(json.loads(text.decode()), {})
        info = (problem, {} if problem else _candidate_types(schema), parsed, schema)
        if len(_FAST_SCHEMAS) < _SCHEMA_CACHE_SIZE:
            _FAST_SCHEMAS[text] = info
    return info


def _decode_plain(packet: Packet) -> DecodedAlert | None:
    """The alert of a plain, sound packet decoded with its cached schema; None otherwise."""
    try:
        meta, block = _plain_container(packet.data)
        if meta.get("avro.codec", b"null") != b"null" or "avro.schema" not in meta:
            return None
        problem, types, parsed, schema = _fast_schema(meta["avro.schema"])
        if problem:
            return None
        fo = io.BytesIO(block)
        record = fastavro.schemaless_reader(fo, parsed, None)
        if fo.tell() != len(block):  # the record must fill its block exactly
            return None
    except Exception:  # noqa: BLE001 - any oddity: the general reader decides
        return None
    if not isinstance(record, dict) or not isinstance(record.get("candidate"), dict):
        return None
    return DecodedAlert(packet.name, _schema_version(record, schema), record, types)


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
    fast = _decode_plain(packet)
    if fast is not None:
        return fast
    try:
        reader = fastavro.reader(io.BytesIO(packet.data))
        schema = reader.writer_schema
        problem, types = _schema_info(reader)
        # two records are enough to tell "not one alert"; a corrupt count must not fill memory
        records = [] if problem else list(itertools.islice(reader, 2))
    except Exception as exc:  # fastavro raises many types for corrupt input
        raise InputFileError(
            f"{packet.name}: Avro decoding failed ({type(exc).__name__}: {_one_line(exc)}); "
            "the packet is truncated or corrupt — re-fetch it."
        ) from exc
    if problem:
        raise InputFileError(
            f"{packet.name}: not a ZTF alert packet: {problem}; re-fetch it or remove it."
        )
    if len(records) != 1 or not isinstance(records[0], dict) or "candidate" not in records[0]:
        raise InputFileError(
            f"{packet.name}: expected one ZTF alert record with a 'candidate', found "
            f"{len(records)} record(s); is this a ZTF alert packet?"
        )
    record = records[0]
    if not isinstance(record["candidate"], dict):
        raise InputFileError(
            f"{packet.name}: 'candidate' is a {type(record['candidate']).__name__}, expected a "
            "record; is this a ZTF alert packet?"
        )
    return DecodedAlert(packet.name, _schema_version(record, schema), record, types)
