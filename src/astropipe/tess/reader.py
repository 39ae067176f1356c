"""TESS, Kepler and K2 light-curve FITS → the common light-curve table.

:func:`read_lightcurve_fits` reads one file by the format's rules, not by its name: the mission
from MISSION/TELESCOP, the observing season from SECTOR/QUARTER/CAMPAIGN, the time reference
from TIMEREF/TIMESYS/TIMEUNIT/BJDREFI/BJDREFF, the cadence from TIMEDEL, the target from the
catalogue-id keyword; the columns through the first :class:`~astropipe.tess.columns.ColumnMap`
the file matches. So it reads sectors, quarters, campaigns and data releases it has never seen,
and a new HLSP layout is a new column map.

Every cadence with a finite TIME is kept (NaN times are dropped and counted): the raw QUALITY
value is in ``quality`` and in the low half of ``flags``; cadences the configured quality preset
names also get :data:`~astropipe.lightcurve.FLAG_QUALITY_MASKED`, so filtering is a downstream
choice. A file that cannot be read raises one :class:`~astropipe.errors.InputFileError` naming
the file and the reason, never another exception.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from astropy.io import fits
from astropy.io.fits.verify import VerifyError

from astropipe.errors import AstropipeError, InputFileError, MissingInputError
from astropipe.lightcurve import FLAG_QUALITY_MASKED, SURVEY_FLAGS_MASK
from astropipe.provenance import sha256_bytes
from astropipe.tess.columns import MISSIONS, TESS_LIGHTCURVE_SCHEMA, ColumnMap, Mission
from astropipe.tess.config import TessReadConfig
from astropipe.tess.fitsio import Hdu, read_columns, scan_hdus, table_columns
from astropipe.tess.quality import quality_bitmask
from astropipe.tess.timing import mission_time_to_mjd, time_reference

if TYPE_CHECKING:
    from astropipe.compute import Workers

__all__ = [
    "META_KEY",
    "read_lightcurve_fits",
    "file_info",
    "ReadResult",
    "FileRead",
    "read_file_task",
    "gather_reads",
    "read_lightcurves",
]

log = logging.getLogger(__name__)

#: Schema-metadata key of the per-file reading record (JSON).
META_KEY = b"astropipe.tess"

# What astropy and numpy raise on damaged bytes; each becomes one InputFileError line.
_READ_ERRORS = (
    OSError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    UnicodeError,
    AttributeError,
    VerifyError,
    MemoryError,
)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _describe(exc: BaseException) -> str:
    """One clause for an astropy/numpy failure, in the reader's words where we know them."""
    text = _first_line(exc)
    card = re.search(r"Unparsable card \((\S+)\)", text)
    if card:
        return f"header card {card[1]} is damaged"
    return text


def _header_lookup(*headers: fits.Header) -> Callable[[str], Any]:
    """Keyword → first non-empty value across ``headers`` (None if absent, blank or undefined)."""

    def card(key: str) -> Any:
        for h in headers:
            if key in h:
                value = h[key]
                if value is None or isinstance(value, fits.card.Undefined):
                    continue
                if isinstance(value, str) and not value.strip():
                    continue
                return value
        return None

    return card


def _table_hdu(hdus: list[Hdu], ext: str | int) -> Hdu | None:
    if isinstance(ext, int):
        hdu = hdus[ext] if 0 < ext < len(hdus) else None
    else:
        hdu = next((h for h in hdus[1:] if h.name.upper() == ext.upper()), None)
    return hdu if hdu is not None and hdu.is_bintable else None


def _match(
    hdus: list[Hdu], layouts: Iterable[ColumnMap], flux: str, where: str
) -> tuple[ColumnMap, Hdu] | list[str]:
    """The first layout the file matches with its table HDU, or why each one did not match."""
    why = []
    for lay in layouts:
        if flux not in lay.fluxes:
            why.append(f"{lay.name}: defines no flux {flux!r}")
            continue
        hdu = _table_hdu(hdus, lay.extension)
        if hdu is None:
            why.append(f"{lay.name}: no table extension {lay.extension!r}")
            continue
        card = _header_lookup(hdus[0].header, hdu.header)
        wrong = [
            f"{k}={card(k)!r}"
            for k, v in lay.match.items()
            if str(card(k) or "").strip().upper() != str(v).strip().upper()
        ]
        if wrong:
            why.append(f"{lay.name}: {', '.join(wrong)}")
            continue
        names = table_columns(hdu, f"{where} (HDU {hdu.index})")
        missing = [c for c in lay.required_columns(flux) if c.upper() not in names]
        if missing:
            why.append(f"{lay.name}: lacks columns {missing}")
            continue
        return lay, hdu
    return why


def _float_column(cols: dict[str, np.ndarray], name: str) -> np.ndarray:
    return cols[name].astype(np.float64)


def _int_column(
    cols: dict[str, np.ndarray], name: str, where: str, *, nullable: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Integer values and, for a float column, the mask of non-integral/missing entries."""
    arr = cols[name]
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64), None
    # eleanor writes FFIINDEX as float; accept integral values, refuse anything else.
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(arr) | (np.abs(arr) >= 2.0**62)
        safe = np.where(bad, 0.0, arr)
        bad |= safe != np.trunc(safe)
    if bad.any() and not nullable:
        raise InputFileError(
            f"{where}: column {name} holds {int(bad.sum())} non-integer values; expected "
            "integer flags."
        )
    return safe.astype(np.int64), (bad if bad.any() else None)


def _int_card(card: Callable[[str], Any], key: str, where: str) -> int | None:
    value = card(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise InputFileError(f"{where}: header {key}={value!r} is not an integer.")
    try:
        out = int(str(value).strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError, OverflowError):
        raise InputFileError(
            f"{where}: header {key}={value!r} is not an integer; re-download the file."
        ) from None
    if not -(2**62) < out < 2**62:
        raise InputFileError(f"{where}: header {key}={value!r} is out of range.")
    return out


def _float_card(card: Callable[[str], Any], key: str) -> float | None:
    value = card(key)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return None
    out = float(value)
    return out if np.isfinite(out) else None


def _mission(card: Callable[[str], Any], where: str) -> Mission:
    name = card("MISSION") or card("TELESCOP")
    mission = MISSIONS.get(str(name).strip().upper()) if name is not None else None
    if mission is None:
        raise InputFileError(
            f"{where}: unknown mission MISSION/TELESCOP={name!r}; this reader knows "
            f"{[m.name for m in MISSIONS.values()]}."
        )
    return mission


def _target_id(card: Callable[[str], Any], lay: ColumnMap, where: str) -> int:
    for key in lay.target_keys:
        value = _int_card(card, key, where)
        if value is not None:
            return value
    raise InputFileError(
        f"{where}: no catalogue id in the headers (looked for {list(lay.target_keys)}); add the "
        f"right keyword to target_keys of column map {lay.name!r}."
    )


def _cadence_s(card: Callable[[str], Any], lay: ColumnMap) -> float | None:
    timedel = _float_card(card, "TIMEDEL")
    if timedel is not None and timedel > 0:
        # TIMEDEL is in days; rounded to the microsecond so 1799.9999999999995 reads 1800.
        return round(timedel * 86400.0, 6)
    return lay.cadence_s


def _constant(value: Any, n: int, type_: pa.DataType) -> pa.Array:
    if value is None:
        return pa.nulls(n, type=type_)
    return pa.repeat(pa.scalar(value, type=type_), n)


def _read(path: Path, raw: bytes, cfg: TessReadConfig) -> pa.Table:
    where = str(path)
    scan = scan_hdus(raw, where)
    hdus = scan.hdus
    hint = f"; {scan.problem}" if scan.problem else ""
    if len(hdus) < 2 and scan.problem:
        raise InputFileError(f"{where}: {scan.problem}; re-download it.")
    if len(hdus) < 2:
        raise InputFileError(
            f"{where}: no table extension after the primary header{hint}; "
            "the file is truncated or not a light curve — re-download it."
        )
    found = _match(hdus, cfg.layouts, cfg.flux_column, where)
    if isinstance(found, list):
        raise InputFileError(
            f"{where}: unknown light-curve layout ({'; '.join(found)}){hint}"
            "; add a column map for it to tess.read.layouts in conf/tess."
        )
    lay, hdu = found
    # What the target is: the primary header first (SPOC repeats RA_OBJ in the table header
    # with another value in early releases); what TIME is: the table header first.
    card = _header_lookup(hdus[0].header, hdu.header)
    tcard = _header_lookup(hdu.header, hdus[0].header)
    mission = _mission(card, where)
    target = _target_id(card, lay, where)
    ref = time_reference(
        tcard,
        fallback_jd=lay.time_reference_jd,
        default_scale=lay.time_scale,
        where=where,
    )
    spec = lay.fluxes[cfg.flux_column]
    names = [lay.time, lay.quality, *spec.columns(), *([lay.cadenceno] if lay.cadenceno else [])]
    data = read_columns(raw, hdu, list(dict.fromkeys(names)), f"{where} (HDU {hdu.index})")
    time = _float_column(data, lay.time)
    keep = np.isfinite(time)
    n_in = len(time)
    n = int(keep.sum())
    mjd = mission_time_to_mjd(time[keep], ref)

    quality, _ = _int_column(data, lay.quality, where, nullable=False)
    quality = quality[keep]
    bitmask = quality_bitmask(lay.quality_family, cfg.quality, extra_bits=lay.extra_quality_bits)
    masked = (quality & bitmask) != 0
    flags = (quality & SURVEY_FLAGS_MASK) | np.where(masked, FLAG_QUALITY_MASKED, 0)

    flux = _float_column(data, spec.flux)[keep]
    if spec.err is None:
        flux_err = np.full(n, np.nan)
    else:
        flux_err = _float_column(data, spec.err)[keep]
        if spec.err_relative_to:
            base = _float_column(data, spec.err_relative_to)[keep]
            with np.errstate(divide="ignore", invalid="ignore"):
                flux_err = flux * flux_err / base

    if lay.cadenceno:
        cad, cad_bad = _int_column(data, lay.cadenceno, where, nullable=True)
        cad_mask = None if cad_bad is None else cad_bad[keep]
        cadenceno = pa.array(cad[keep], type=pa.int64(), mask=cad_mask)
    else:
        cadenceno = pa.nulls(n, type=pa.int64())

    season = _int_card(card, mission.season_key, where)
    cadence_s = _cadence_s(tcard, lay)
    ra, dec = _float_card(card, "RA_OBJ"), _float_card(card, "DEC_OBJ")
    info = {
        "file": path.as_posix(),
        "bytes": len(raw),
        "layout": lay.name,
        "mission": mission.name,
        "object_id": f"{mission.id_prefix} {target}",
        mission.season_key.lower(): season,
        "data_release": _int_card(card, "DATA_REL", where),
        "procver": None if card("PROCVER") is None else str(card("PROCVER")).strip(),
        "cadences_in_file": n_in,
        "nan_time_dropped": n_in - n,
        "rows": n,
        "flux_column": spec.flux,
        "cadence_s": cadence_s,
        "time": {
            "scale": ref.scale,
            "reference_jd": [ref.jd_int, ref.jd_frac],
            "reference_source": ref.source,
            "mjd": "((BJDREFI - 2400000.5) + BJDREFF) + TIME",
            "timepixr": _float_card(tcard, "TIMEPIXR"),
            "tierrela_d": _float_card(tcard, "TIERRELA"),
        },
        "quality": {
            "family": lay.quality_family,
            "setting": cfg.quality,
            "bitmask": bitmask,
            "flagged": int(masked.sum()),
        },
    }
    seasons = {
        k: season if mission.season_key == k.upper() else None
        for k in ("sector", "quarter", "campaign")
    }
    arrays = {
        "object_id": _constant(info["object_id"], n, pa.string()),
        "survey": _constant(mission.name, n, pa.string()),
        "source": _constant(lay.name, n, pa.string()),
        "band": _constant(mission.band, n, pa.string()),
        "mjd": pa.array(mjd, type=pa.float64()),
        "mag": pa.nulls(n, type=pa.float64()),
        "mag_err": pa.nulls(n, type=pa.float64()),
        "flux": pa.array(flux, type=pa.float64()),
        "flux_err": pa.array(flux_err, type=pa.float64()),
        "limiting_mag": pa.nulls(n, type=pa.float64()),
        "is_upper_limit": pa.array(np.zeros(n, dtype=bool), type=pa.bool_()),
        "flags": pa.array(flags.astype(np.int64), type=pa.int64()),
        "ra": _constant(ra, n, pa.float64()),
        "dec": _constant(dec, n, pa.float64()),
        "target_id": _constant(target, n, pa.int64()),
        "mission": _constant(mission.name, n, pa.string()),
        **{k: _constant(v, n, pa.int32()) for k, v in seasons.items()},
        "cadence_s": _constant(cadence_s, n, pa.float64()),
        "cadenceno": cadenceno,
        "quality": pa.array(quality, type=pa.int64()),
        "flux_column": _constant(spec.flux, n, pa.string()),
    }
    table = pa.Table.from_arrays(
        [arrays[f.name] for f in TESS_LIGHTCURVE_SCHEMA], schema=TESS_LIGHTCURVE_SCHEMA
    )
    return table.replace_schema_metadata({META_KEY: json.dumps(info, sort_keys=True).encode()})


def read_lightcurve_fits(
    path: str | os.PathLike[str], cfg: TessReadConfig | None = None, *, name: str | None = None
) -> pa.Table:
    """Read one TESS/Kepler/K2 light-curve FITS file into the TESS light-curve schema.

    Parameters
    ----------
    path
        The FITS file (SPOC, Kepler/K2 archive, or an HLSP a column map describes).
    cfg
        Flux column, quality preset and column maps; :class:`TessReadConfig` defaults if None.
    name
        The path the record and the messages name (default: ``path`` as given). A task on
        another worker reads an absolute ``path`` and still reports the stage's own name.

    Returns
    -------
    pyarrow.Table
        :data:`~astropipe.tess.columns.TESS_LIGHTCURVE_SCHEMA`, one row per cadence with a
        finite TIME, in file order. ``mjd`` is MJD in TDB. The schema metadata under
        :data:`META_KEY` records the file's SHA-256, layout, time reference and scale, NaN
        times dropped and the quality bitmask (see :func:`file_info`).

    Raises
    ------
    MissingInputError
        The file does not exist.
    InputFileError
        Anything else that keeps the file from being read: truncation, damaged headers, an
        unknown layout or mission, a time reference that is not barycentric TDB. One line
        naming the file and the reason.

    Examples
    --------
    >>> t = read_lightcurve_fits("data/sample/tess/test-lc-tess-pimen-100-cadences.fits")
    >>> t.num_rows, t["object_id"][0].as_py()
    (100, 'TIC 261136679')
    """
    cfg = cfg or TessReadConfig()
    p = Path(name) if name is not None else Path(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise MissingInputError(f"{p}: file not found; check tess.inputs.") from None
    except OSError as exc:
        raise InputFileError(f"{p}: cannot be read ({_first_line(exc)}).") from None
    # No warnings.catch_warnings here: it swaps process-global state, so reads on several
    # threads would record each other's warnings (and leave the capture installed). What a
    # message says about a file's structure comes from the scan (Scan.problem), as data.
    try:
        table = _read(p, raw, cfg)
    except AstropipeError:
        raise
    except _READ_ERRORS as exc:
        raise InputFileError(
            f"{p}: not a readable light-curve FITS file ({_describe(exc)}); re-download it."
        ) from None
    info = json.loads(table.schema.metadata[META_KEY])
    info["sha256"] = sha256_bytes(raw)
    return table.replace_schema_metadata({META_KEY: json.dumps(info, sort_keys=True).encode()})


def file_info(table: pa.Table) -> dict[str, Any]:
    """The per-file reading record :func:`read_lightcurve_fits` stored in ``table``."""
    blob = (table.schema.metadata or {}).get(META_KEY)
    return json.loads(blob) if blob else {}


@dataclass
class ReadResult:
    """Several files read: the rows, each file's record, and the files refused with the reason."""

    table: pa.Table
    files: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class FileRead:
    """One file's outcome as plain data (it may come back from another process or machine).

    Exactly one of ``table`` (the rows, schema metadata dropped, with ``info`` its reading
    record) and ``reason`` (why the file is quarantined) is set.
    """

    file: str
    table: pa.Table | None = None
    info: dict[str, Any] | None = None
    reason: str | None = None


def read_file_task(item: tuple[str, str], cfg: TessReadConfig, *, fail: bool) -> FileRead:
    """Read one file as a compute task (:meth:`astropipe.compute.Workers.map`).

    Parameters
    ----------
    item
        ``(absolute path, name)``: the file is read at the absolute path (a cluster worker
        runs in another working directory) and reported under ``name``.
    cfg
        Reader options.
    fail
        Raise the file's :class:`InputFileError` instead of returning it as a quarantine.

    Returns
    -------
    FileRead
        The rows and record, or the quarantine reason. Nothing is logged here: logs emitted
        on a cluster worker never reach the stage's log, so :func:`gather_reads` logs.
    """
    path, name = item
    try:
        t = read_lightcurve_fits(path, cfg, name=name)
    except InputFileError as exc:
        if fail:
            raise
        return FileRead(file=name, reason=str(exc))
    return FileRead(file=name, table=t.replace_schema_metadata(None), info=file_info(t))


def gather_reads(reads: Iterable[FileRead]) -> ReadResult:
    """Merge :func:`read_file_task` outcomes in the order given, logging what each one says."""
    tables, files, quarantined = [], [], []
    for r in reads:
        if r.reason is not None:
            log.warning("quarantined %s", r.reason)
            quarantined.append({"file": r.file, "reason": r.reason})
            continue
        assert r.table is not None and r.info is not None
        dropped = int(r.info["nan_time_dropped"])
        if dropped:
            log.info(
                "%s: dropped %d of %d cadences with non-finite TIME",
                r.file, dropped, r.info["cadences_in_file"],
            )  # fmt: skip
        files.append(r.info)
        tables.append(r.table)
    table = pa.concat_tables(tables) if tables else TESS_LIGHTCURVE_SCHEMA.empty_table()
    return ReadResult(table=table, files=files, quarantined=quarantined)


def read_lightcurves(
    paths: Iterable[str | os.PathLike[str]],
    cfg: TessReadConfig | None = None,
    *,
    fail: bool = False,
    pool: Workers | None = None,
    progress: bool = False,
) -> ReadResult:
    """Read many light-curve files; a file that cannot be read is quarantined, not fatal.

    The one read path of ``ingest_tess``: each file is one :func:`read_file_task`, read at its
    absolute path (a cluster worker runs in another working directory) and reported under the
    path as given; the outcomes are merged by :func:`gather_reads` in input order, so the
    result does not depend on the pool.

    Parameters
    ----------
    paths
        The files, read in the order given (consumed lazily).
    cfg
        Reader options.
    fail
        Raise the first :class:`InputFileError` (in input order) instead of quarantining.
    pool
        Read the files as tasks on this pool (:func:`astropipe.compute.workers`), one file a
        task; in this thread if None. The result is the same either way.
    progress
        Show a progress bar (tqdm) as files come back.

    Returns
    -------
    ReadResult
        Rows of every readable file concatenated in input order (schema metadata dropped),
        one record per file read, and ``{"file", "reason"}`` per quarantined file.
    """
    cfg = cfg or TessReadConfig()
    total = len(paths) if isinstance(paths, Sized) else None
    items = ((os.path.abspath(p), Path(p).as_posix()) for p in paths)
    reads: Iterable[FileRead]
    if pool is None:
        reads = (read_file_task(item, cfg, fail=fail) for item in items)
    else:
        reads = pool.map(read_file_task, items, cfg=cfg, fail=fail)
    if progress:
        from tqdm import tqdm

        reads = tqdm(reads, total=total, desc="light curves", unit="file")
    return gather_reads(reads)
