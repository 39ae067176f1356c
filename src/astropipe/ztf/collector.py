"""Tabulate decoded alerts: the alerts table, light-curve rows and cutout stamps.

An :class:`AlertCollector` gathers column lists as packets are decoded (in this process or in
worker processes, whose collectors are merged in input order) and builds the Arrow tables at
the end with an explicit schema taken from the packets' own writer schemas.

Duplicate ``candid``: the same alert can arrive in several packets (re-serialised under a newer
schema, or re-sent with different content). One packet wins, by one rule that does not depend
on input order or file names: the newest schema version, then the packet bytes with the
smallest SHA-256. Only the winner's rows reach the alerts table *and* the light curves (its
candidate and its ``prv_candidates``), and only its stamps are kept; the others are logged and
listed by :meth:`AlertCollector.duplicates`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from astropipe.lightcurve import FLAG_NEGATIVE_DIFF, ZTF_BANDS
from astropipe.ztf.alerts import JD_MJD_OFFSET, DecodedAlert
from astropipe.ztf.checks import stamp_dir

__all__ = ["AlertCollector", "AlertMeta", "stamp_files"]

log = logging.getLogger(__name__)

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
# light-curve columns named after another candidate field
_LC_COLUMN = {"magpsf": "mag", "sigmapsf": "mag_err"}
_WIDER = {(pa.int32(), pa.int64()): pa.int64(), (pa.float32(), pa.float64()): pa.float64()}


def _negative(isdiffpos: Any) -> bool:
    return str(isdiffpos) in ("f", "0")


def _isdiffpos(value: Any) -> str | None:
    """``isdiffpos`` as 't'/'f': v1.x packets write it as an int 1/0, later ones as text."""
    if value is None:
        return None
    return "f" if _negative(value) else "t"


@dataclass(frozen=True, slots=True)
class AlertMeta:
    """What an alert row does not show: its packet's SHA-256, light-curve rows and stamps."""

    sha256: str
    lc_rows: int
    stamps: tuple[str, ...]


def stamp_files(rec: Mapping[str, Any], *, keep_jpeg: bool) -> tuple[list[tuple[str, bytes]], int]:
    """The stamps of a checked alert as ``(relative file name, bytes)``, and JPEGs skipped.

    File names are ``<objectId or alertId<n>>/<candid>_<kind>.fits`` built only from checked
    identifiers (see :mod:`astropipe.ztf.checks`), never from other packet text.
    """
    out = []
    skipped = 0
    folder = stamp_dir(rec)
    candid = int(rec.get("candid", rec["candidate"].get("candid")))
    for key, kind in _STAMPS:
        stamp = rec.get(key)
        if not stamp or not stamp.get("stampData"):
            continue
        data = stamp["stampData"]
        if data[:2] == b"\x1f\x8b":
            out.append((f"{folder}/{candid}_{kind}.fits", data))
        elif data[:3] == b"\xff\xd8\xff":
            if keep_jpeg:
                out.append((f"{folder}/{candid}_{kind}.jpg", data))
            else:
                skipped += 1
    return out, skipped


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
                # for DC magnitudes (astropipe.ztf.dcmag); not light-curve table columns
                "magnr",
                "sigmagnr",
                "distnr",
            )
        }
    )
    types: dict[str, pa.DataType] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    lc_skipped_no_object: int = 0
    jpeg_skipped: int = 0
    meta: list[AlertMeta] = field(default_factory=list)
    # the candidate types merged last (speed: packets of one schema share one dict)
    _merged: dict[str, pa.DataType] | None = field(default=None, repr=False, compare=False)

    def add(self, alert: DecodedAlert, *, sha256: str = "") -> list[tuple[str, bytes]]:
        """Add one checked alert; return its stamps as ``(relative file name, bytes)`` to write.

        ``alert`` must have passed :func:`astropipe.ztf.checks.check_alert`. ``sha256`` (of the
        packet bytes) breaks ties between packets with the same ``candid``. FITS stamps are
        returned still gzip-compressed (decompress with :func:`gzip.decompress` before
        writing), so the caller can do that work off the decoding thread.
        """
        rec = alert.record
        cand = rec["candidate"]
        self.versions[alert.schemavsn] = self.versions.get(alert.schemavsn, 0) + 1
        if alert.candidate_types is not self._merged:  # one dict per writer schema (cached)
            for name, tp in alert.candidate_types.items():
                self._merge_type(name, tp)  # idempotent: merging the same types twice is a no-op
            self._merged = alert.candidate_types
        prv = rec.get("prv_candidates") or []
        # only fields whose type this packet's schema declares: a value of another type
        # must not land in a column typed by another packet's schema
        row = {k: v for k, v in cand.items() if k in alert.candidate_types or k in _CORE_NAMES}
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
            points = [cand, *prv]
            self._add_lcs(object_id, points, [False] + [p.get("candid") is None for p in prv])
            n_lc = len(points)
        else:
            self.lc_skipped_no_object += 1 + len(prv)
            n_lc = 0
        stamps: list[tuple[str, bytes]] = []
        if self.stamps:
            stamps, jpeg = stamp_files(rec, keep_jpeg=self.keep_jpeg)
            self.jpeg_skipped += jpeg
        self.meta.append(AlertMeta(sha256, n_lc, tuple(name for name, _ in stamps)))
        return stamps

    def merge(self, other: AlertCollector) -> None:
        """Append the rows of ``other`` (collected after this one's) to this collector."""
        self.alert_rows.extend(other.alert_rows)
        self.meta.extend(other.meta)
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

    def _add_lcs(
        self, object_id: str, points: list[Mapping[str, Any]], upper_limits: list[bool]
    ) -> None:
        """Append the light-curve rows of ``points`` (one packet's candidate and history)."""
        lc = self.lc
        n = len(points)
        lc["object_id"].extend([object_id] * n)
        lc["band"].extend([ZTF_BANDS.get(c.get("fid"), "unknown") for c in points])
        lc["mjd"].extend([c["jd"] - JD_MJD_OFFSET for c in points])
        lc["limiting_mag"].extend([c.get("diffmaglim") for c in points])
        lc["is_upper_limit"].extend(upper_limits)
        lc["flags"].extend(
            [FLAG_NEGATIVE_DIFF if _negative(c.get("isdiffpos")) else 0 for c in points]
        )
        lc["ra"].extend([c.get("ra") for c in points])
        lc["dec"].extend([c.get("dec") for c in points])
        pairs = list(zip(points, upper_limits, strict=True))
        for key in ("magpsf", "sigmapsf", "magnr", "sigmagnr", "distnr"):
            column = _LC_COLUMN.get(key, key)
            lc[column].extend([None if up else c.get(key) for c, up in pairs])

    # ------------------------------------------------------------------ tables
    def winners(self) -> list[int]:
        """Indices of the alert rows kept: one per ``candid`` (see the module docstring)."""
        best: dict[Any, int] = {}
        for i, row in enumerate(self.alert_rows):
            old = best.get(row["candid"])
            if old is None or self._beats(i, old):
                best[row["candid"]] = i
        return sorted(best.values())

    def duplicates(self) -> list[dict[str, Any]]:
        """Every ``candid`` seen in more than one packet: the packet kept and those dropped."""
        groups: dict[Any, list[int]] = {}
        for i, row in enumerate(self.alert_rows):
            groups.setdefault(row["candid"], []).append(i)
        kept = set(self.winners())
        out = []
        for candid, idx in groups.items():
            if len(idx) < 2:
                continue
            (win,) = [i for i in idx if i in kept]
            out.append(
                {
                    "candid": candid,
                    "kept": self.alert_rows[win]["packet"],
                    "dropped": [self.alert_rows[i]["packet"] for i in idx if i != win],
                    "same_content": len({self.meta[i].sha256 for i in idx}) == 1,
                }
            )
        return sorted(out, key=lambda d: d["candid"])

    def _beats(self, i: int, j: int) -> bool:
        vi = _version_key(self.alert_rows[i]["schemavsn"])
        vj = _version_key(self.alert_rows[j]["schemavsn"])
        if vi != vj:
            return vi > vj
        return self.meta[i].sha256 < self.meta[j].sha256

    def alerts_table(self) -> pa.Table:
        """The alerts table: core columns first, then every candidate field sorted by name.

        One row per ``candid``: the packet with the newest schema version, then the smallest
        SHA-256, wins (see the module docstring).
        """
        rows = sorted(
            (self.alert_rows[i] for i in self.winners()), key=lambda r: (r["jd"], r["candid"])
        )
        extra = sorted(set(self.types) - _CORE_NAMES)
        fields = [pa.field(n, t) for n, t in _CORE] + [pa.field(n, self.types[n]) for n in extra]
        arrays = [pa.array(_column(rows, f), type=f.type) for f in fields]
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))

    def lightcurve_columns(self) -> dict[str, np.ndarray | list[Any]]:
        """The light-curve rows of the winning packets, as columns (not yet deduplicated)."""
        if len(self.meta) != len(self.alert_rows):  # rows added without meta: keep all
            return self.lc
        keep = set(self.winners())
        if len(keep) == len(self.alert_rows):
            return self.lc
        spans = []
        start = 0
        for i, m in enumerate(self.meta):
            if i in keep:
                spans.append((start, start + m.lc_rows))
            start += m.lc_rows
        return {k: [v for a, b in spans for v in col[a:b]] for k, col in self.lc.items()}


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
