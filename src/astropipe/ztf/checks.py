"""Checks on a decoded alert before any of it reaches a table or a path.

A packet carries its own writer schema, so a corrupt or hostile packet can give any field any
type. :func:`check_alert` makes sure the values that become table columns or path components
are what the ZTF schema says (https://zwickytransientfacility.github.io/ztf-avro-alert/), and
raises :class:`~astropipe.errors.InputFileError` (the packet is quarantined) otherwise.

Path components from data are never trusted: the cutout directory is the ``objectId`` only when
it matches :data:`OBJECT_ID` (``ZTF`` + two-digit year + seven lower-case letters, e.g.
``ZTF18abmmoot``), else ``alertId<integer>`` for v1.x packets without one; the file name is the
integer ``candid``. Nothing else from a packet is ever joined to a path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from astropipe.errors import InputFileError
from astropipe.ztf.alerts import DecodedAlert

__all__ = ["OBJECT_ID", "CORE_TYPES", "check_alert", "stamp_dir"]

#: ZTF object names: "ZTF" + year of first detection (2 digits) + 7 lower-case letters
#: (ZTF Avro Alert Schema, field ``objectId``; every sample packet matches).
OBJECT_ID = re.compile(r"ZTF[0-9]{2}[a-z]{7}")

#: Candidate fields that become fixed-type alert-table columns.
CORE_TYPES: dict[str, pa.DataType] = {
    "jd": pa.float64(),
    "fid": pa.int32(),
    "ra": pa.float64(),
    "dec": pa.float64(),
    "magpsf": pa.float32(),
    "sigmapsf": pa.float32(),
    "rb": pa.float32(),
    "drb": pa.float32(),
    "programid": pa.int32(),
}
# Light-curve values read from every candidate and prv_candidate.
_LC_NUMBERS = ("magpsf", "sigmapsf", "diffmaglim", "ra", "dec")
_INT32, _INT64 = 2**31, 2**63
_INT_RANGE = {pa.int32(): _INT32, pa.int64(): _INT64}
_isfinite = math.isfinite
_STAMPS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fits(value: Any, tp: pa.DataType) -> bool:
    if value is None:
        return True
    if tp in _INT_RANGE:
        return _is_int(value) and -_INT_RANGE[tp] <= value < _INT_RANGE[tp]
    if pa.types.is_floating(tp):
        return _is_number(value)
    return isinstance(value, str)


def _bad(alert: DecodedAlert, what: str) -> InputFileError:
    return InputFileError(f"{alert.packet}: {what}; the packet is corrupt or not a ZTF alert.")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _sound_point(c: Any) -> bool:
    """True when ``c`` certainly passes :func:`_check_point`: the common types, checked fast.

    Decoded ZTF points hold ``float`` photometry and ``int`` ids; anything else (a subclass,
    an ``int`` magnitude, a wrong type) is left to :func:`_check_point` to accept or refuse.
    """
    if type(c) is not dict:
        return False
    jd = c.get("jd")
    if type(jd) is not float or not _isfinite(jd):
        return False
    fid, candid = c.get("fid"), c.get("candid")
    if fid is not None and (type(fid) is not int or not -_INT32 <= fid < _INT32):
        return False
    if candid is not None and (type(candid) is not int or not -_INT64 <= candid < _INT64):
        return False
    for name in _LC_NUMBERS:
        v = c.get(name)
        if v is not None and type(v) is not float:
            return False
    return True


def _check_point(alert: DecodedAlert, c: Any, where: str) -> None:
    if _sound_point(c):
        return
    if not isinstance(c, Mapping):
        raise _bad(alert, f"{where} is a {type(c).__name__}, expected a record")
    jd = c.get("jd")
    if not _is_number(jd) or not math.isfinite(jd):
        raise _bad(alert, f"{where}.jd is {_show(jd)}, expected a finite Julian date")
    if not _fits(c.get("fid"), pa.int32()):
        raise _bad(alert, f"{where}.fid is {_show(c.get('fid'))}, expected an integer filter id")
    if not _fits(c.get("candid"), pa.int64()):
        raise _bad(alert, f"{where}.candid is {_show(c.get('candid'))}, expected an integer")
    for name in _LC_NUMBERS:
        if not _fits(c.get(name), pa.float64()):
            raise _bad(alert, f"{where}.{name} is {_show(c.get(name))}, expected a number")


def check_alert(alert: DecodedAlert) -> None:
    """Raise :class:`InputFileError` unless every value used as a column or path is sound.

    Checks the identifiers (``objectId`` grammar, integer ``candid``/``alertId``), the
    candidate and every ``prv_candidates`` entry (records with a finite ``jd``, numeric
    photometry), the core column types, and the shape of ``fp_hists`` and the cutouts.
    """
    rec, cand = alert.record, alert.record["candidate"]
    object_id = rec.get("objectId")
    if object_id is not None and not (
        isinstance(object_id, str) and OBJECT_ID.fullmatch(object_id)
    ):
        raise _bad(alert, f"objectId {_show(object_id)} is not a ZTF name like 'ZTF18abmmoot'")
    if object_id is None and not _is_int(rec.get("alertId")):
        raise _bad(alert, "neither an objectId nor an integer alertId names the alert")
    if not _fits(rec.get("alertId"), pa.int64()):
        raise _bad(alert, f"alertId {_show(rec.get('alertId'))} is not an integer")
    candid = rec.get("candid", cand.get("candid"))
    if not _is_int(candid) or not -(2**63) <= candid < 2**63:
        raise _bad(alert, f"candid {_show(candid)} is not an integer")
    for key in ("publisher", "schemavsn"):
        if not _fits(rec.get(key), pa.string()):
            raise _bad(alert, f"{key} {_show(rec.get(key))} is not text")
    _check_point(alert, cand, "candidate")
    for name, tp in CORE_TYPES.items():
        if not _fits(cand.get(name), tp):
            raise _bad(alert, f"candidate.{name} is {_show(cand.get(name))}, expected {tp}")
    prv = rec.get("prv_candidates")
    if prv is not None and not isinstance(prv, list):
        raise _bad(alert, f"prv_candidates is a {type(prv).__name__}, expected a list")
    for i, p in enumerate(prv or []):
        _check_point(alert, p, f"prv_candidates[{i}]")
    fp = rec.get("fp_hists")
    if fp is not None and not isinstance(fp, list):
        raise _bad(alert, f"fp_hists is a {type(fp).__name__}, expected a list")
    for key in _STAMPS:
        stamp = rec.get(key)
        if stamp is None:
            continue
        if not isinstance(stamp, Mapping) or not isinstance(
            stamp.get("stampData"), (bytes, type(None))
        ):
            raise _bad(alert, f"{key} is not a cutout record with stampData bytes")


def stamp_dir(record: Mapping[str, Any]) -> str:
    """The cutout directory name of a checked alert: its objectId, else ``alertId<n>``."""
    object_id = record.get("objectId")
    return object_id if object_id is not None else f"alertId{int(record['alertId'])}"
