"""Tabulate decoded alerts: the alerts table, light-curve rows and cutout stamps.

An :class:`AlertCollector` gathers column lists as packets are decoded (in this process or in
worker processes, whose collectors are merged in input order) and builds the Arrow tables at
the end with an explicit schema taken from the packets' own writer schemas.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from astropipe.lightcurve import FLAG_NEGATIVE_DIFF, ZTF_BANDS
from astropipe.ztf.alerts import JD_MJD_OFFSET, DecodedAlert

__all__ = ["AlertCollector"]

_STAMPS = (
    ("cutoutScience", "science"),
    ("cutoutTemplate", "template"),
    ("cutoutDifference", "difference"),
)

# Alert-table columns that lead the file, in this order; every other candidate field follows
# sorted by name.
_CORE = (
    ("objectId", pa.string()),
    ("candid", pa.int64()),
    ("alertId", pa.int64()),
    ("schemavsn", pa.string()),
    ("publisher", pa.string()),
    ("jd", pa.float64()),
    ("mjd", pa.float64()),
    ("fid", pa.int32()),
    ("band", pa.string()),
    ("ra", pa.float64()),
    ("dec", pa.float64()),
    ("magpsf", pa.float32()),
    ("sigmapsf", pa.float32()),
    ("rb", pa.float32()),
    ("drb", pa.float32()),
    ("isdiffpos", pa.string()),
    ("programid", pa.int32()),
    ("n_prv_candidates", pa.int32()),
    ("n_fp_hists", pa.int32()),
    ("packet", pa.string()),
)
_CORE_NAMES = {name for name, _ in _CORE}
_WIDER = {(pa.int32(), pa.int64()): pa.int64(), (pa.float32(), pa.float64()): pa.float64()}


def _negative(isdiffpos: Any) -> bool:
    return str(isdiffpos) in ("f", "0")


def _isdiffpos(value: Any) -> str | None:
    """``isdiffpos`` as 't'/'f': v1.x packets write it as an int 1/0, later ones as text."""
    if value is None:
        return None
    return "f" if _negative(value) else "t"


@dataclass
class AlertCollector:
    """Accumulate decoded alerts into column lists for the alerts and light-curve tables.

    Parameters
    ----------
    keep_jpeg
        Keep v1.x JPEG cutouts (as ``.jpg``) instead of skipping them.
    stamps
        Extract the cutout stamps (decompressing them costs as much as decoding the packet).
    """

    keep_jpeg: bool = False
    stamps: bool = True
    alert_rows: list[dict[str, Any]] = field(default_factory=list)
    lc: dict[str, list[Any]] = field(
        default_factory=lambda: {
            k: []
            for k in (
                "object_id",
                "band",
                "mjd",
                "mag",
                "mag_err",
                "limiting_mag",
                "is_upper_limit",
                "flags",
                "ra",
                "dec",
            )
        }
    )
    types: dict[str, pa.DataType] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    lc_skipped_no_object: int = 0
    jpeg_skipped: int = 0

    def add(self, alert: DecodedAlert) -> list[tuple[str, bytes]]:
        """Add one alert; return its stamps as ``(relative file name, bytes)`` to write.

        FITS stamps are returned still gzip-compressed (decompress with :func:`gzip.decompress`
        before writing), so the caller can do that work off the decoding thread.
        """
        rec = alert.record
        cand = rec["candidate"]
        self.versions[alert.schemavsn] = self.versions.get(alert.schemavsn, 0) + 1
        for name, tp in alert.candidate_types.items():
            self._merge_type(name, tp)
        prv = rec.get("prv_candidates") or []
        row = dict(cand)
        row.update(
            objectId=rec.get("objectId"),
            candid=rec.get("candid", cand.get("candid")),
            alertId=rec.get("alertId"),
            schemavsn=alert.schemavsn,
            publisher=rec.get("publisher"),
            mjd=cand["jd"] - JD_MJD_OFFSET,
            band=ZTF_BANDS.get(cand.get("fid")),
            n_prv_candidates=len(prv),
            n_fp_hists=len(rec.get("fp_hists") or []),
            packet=alert.packet,
            isdiffpos=_isdiffpos(cand.get("isdiffpos")),
        )
        self.alert_rows.append(row)
        object_id = rec.get("objectId")
        if object_id:
            self._add_lc(object_id, cand, upper_limit=False)
            for p in prv:
                self._add_lc(object_id, p, upper_limit=p.get("candid") is None)
        else:
            self.lc_skipped_no_object += 1 + len(prv)
        if not self.stamps:
            return []
        return self._stamps(rec, object_id or f"alertId{rec.get('alertId')}")

    def merge(self, other: AlertCollector) -> None:
        """Append the rows of ``other`` (collected after this one's) to this collector."""
        self.alert_rows.extend(other.alert_rows)
        for key, values in other.lc.items():
            self.lc[key].extend(values)
        for name, tp in other.types.items():
            self._merge_type(name, tp)
        for version, count in other.versions.items():
            self.versions[version] = self.versions.get(version, 0) + count
        self.lc_skipped_no_object += other.lc_skipped_no_object
        self.jpeg_skipped += other.jpeg_skipped

    def _merge_type(self, name: str, tp: pa.DataType) -> None:
        old = self.types.get(name)
        if old is None or old == tp:
            self.types[name] = tp
        else:  # a field whose type changed between schema versions: widen, else text
            self.types[name] = _WIDER.get((old, tp)) or _WIDER.get((tp, old)) or pa.string()

    def _add_lc(self, object_id: str, c: Mapping[str, Any], *, upper_limit: bool) -> None:
        lc = self.lc
        lc["object_id"].append(object_id)
        lc["band"].append(ZTF_BANDS.get(c.get("fid"), "unknown"))
        lc["mjd"].append(c["jd"] - JD_MJD_OFFSET)
        lc["mag"].append(None if upper_limit else c.get("magpsf"))
        lc["mag_err"].append(None if upper_limit else c.get("sigmapsf"))
        lc["limiting_mag"].append(c.get("diffmaglim"))
        lc["is_upper_limit"].append(upper_limit)
        lc["flags"].append(FLAG_NEGATIVE_DIFF if _negative(c.get("isdiffpos")) else 0)
        lc["ra"].append(c.get("ra"))
        lc["dec"].append(c.get("dec"))

    def _stamps(self, rec: Mapping[str, Any], object_id: str) -> list[tuple[str, bytes]]:
        out = []
        candid = rec.get("candid", rec["candidate"].get("candid"))
        for key, kind in _STAMPS:
            stamp = rec.get(key)
            if not stamp or not stamp.get("stampData"):
                continue
            data = stamp["stampData"]
            if data[:2] == b"\x1f\x8b":
                out.append((f"{object_id}/{candid}_{kind}.fits", data))
            elif data[:3] == b"\xff\xd8\xff":
                if self.keep_jpeg:
                    out.append((f"{object_id}/{candid}_{kind}.jpg", data))
                else:
                    self.jpeg_skipped += 1
        return out

    # ------------------------------------------------------------------ tables
    def alerts_table(self) -> pa.Table:
        """The alerts table: core columns first, then every candidate field sorted by name.

        Duplicate ``candid`` (the same alert re-serialised under a newer schema) keep the row
        of the newest schema version.
        """
        rows = _dedupe_by_candid(self.alert_rows)
        extra = sorted(set(self.types) - _CORE_NAMES)
        fields = [pa.field(n, t) for n, t in _CORE] + [pa.field(n, self.types[n]) for n in extra]
        arrays = [pa.array(_column(rows, f), type=f.type) for f in fields]
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))

    def lightcurve_columns(self) -> dict[str, np.ndarray | list[Any]]:
        """The light-curve rows gathered so far, as columns (not yet deduplicated)."""
        return self.lc


def _column(rows: list[dict[str, Any]], fld: pa.Field) -> list[Any]:
    values = [r.get(fld.name) for r in rows]
    if pa.types.is_string(fld.type):
        return [v if v is None or isinstance(v, str) else str(v) for v in values]
    return values


def _version_key(v: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in v.split("."))
    except ValueError:
        return (-1.0,)


def _dedupe_by_candid(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    best: dict[Any, dict[str, Any]] = {}
    for row in rows:
        key = row["candid"]
        old = best.get(key)
        if old is None or _version_key(row["schemavsn"]) > _version_key(old["schemavsn"]):
            best[key] = row
    return sorted(best.values(), key=lambda r: (r["jd"], r["candid"]))
