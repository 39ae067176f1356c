"""The ``frames`` contract: one summary row per calibrated FITS frame (calibrate_images).

Science frames (``SCI``, ``ERR``, ``MASK`` extensions; HISTORY naming each master and its
SHA-256) and master frames (primary = data, ``ERR`` extension) are read one at a time
(memory-mapped) and reduced to a row of numbers; the great-expectations suite runs on that small
table. A file that cannot be read, or lacks an extension, gets a row whose ``problem`` says why,
so it fails the contract by name instead of stopping the stage.

What calibrate_images writes into headers is read through its declared contract
(:func:`~astropipe.calibration.calibrate.masters_used`,
:func:`~astropipe.calibration.calibrate.master_kind`), never by parsing the cards here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.time import Time
from great_expectations.expectations.row_conditions import Column

from astropipe.calibration.calibrate import MASK_BITS, MasterUsed, master_kind, masters_used
from astropipe.provenance import sha256_file
from astropipe.validation.config import FramesConfig
from astropipe.validation.rules import Contract, Rule, between, in_set, unique

if TYPE_CHECKING:
    from astropipe.compute import Workers

__all__ = [
    "FRAME_COLUMNS",
    "KINDS",
    "FrameSource",
    "frame_row",
    "frame_task",
    "frames_table",
    "frames_contract",
]

log = logging.getLogger(__name__)

#: Row kinds: calibrated science frames and the three kinds of master.
KINDS = ("science", "bias", "dark", "flat")
#: MASK dtypes accepted (integer bit planes).
MASK_DTYPES = ("uint8", "int16", "uint16", "int32", "uint32", "int64")
_KNOWN_BITS = int(np.bitwise_or.reduce(list(MASK_BITS.values())))

#: Columns of the summary table, in order (dtypes are the table's own, so not checked).
FRAME_COLUMNS: tuple[str, ...] = (
    "file",
    "kind",
    "problem",
    "shape",
    "filter",
    "exptime",
    "mjd",
    "sci_finite_fraction",
    "sci_median",
    "err_positive_fraction",
    "err_nonnegative_fraction",
    "mask_dtype",
    "mask_unknown_bits",
    "history_masters",
    "masters_check",
)

_NUMERIC = (
    "exptime",
    "mjd",
    "sci_finite_fraction",
    "sci_median",
    "err_positive_fraction",
    "err_nonnegative_fraction",
    "mask_unknown_bits",
    "history_masters",
)


def _mjd(date_obs: Any) -> float:
    try:
        return float(Time(str(date_obs), format="isot", scale="utc").mjd)
    except ValueError:
        return float("nan")


def _masters_check(
    named: list[MasterUsed],
    masters: Path,
    hashes: dict[str, str | None],
    *,
    base: Path | None = None,
) -> str:
    """``ok``, or the first named master that is missing or whose SHA-256 differs.

    A master not in ``hashes`` is hashed from ``base`` (default ``masters``): the same
    directory named by an absolute path, for a task on another worker; messages name
    ``masters``.
    """
    for used in named:
        name, sha = used.name, used.sha256
        if name not in hashes:
            path = (base or masters) / name
            hashes[name] = sha256_file(path) if path.is_file() else None
        if hashes[name] is None:
            return f"missing {(masters / name).as_posix()}"
        if sha != hashes[name]:
            return f"sha256 of {(masters / name).as_posix()} differs from HISTORY"
    return "ok"


def _fraction(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else float("nan")


def _empty_row(path: Path, kind: str, problem: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(FRAME_COLUMNS)
    row.update(file=path.as_posix(), kind=kind, problem=problem)
    return row


def frame_row(
    path: Path,
    *,
    science: bool,
    masters: Path,
    hashes: dict[str, str | None],
    read: FrameSource | None = None,
) -> dict[str, Any]:
    """Summarise one frame (read memory-mapped, one extension at a time).

    ``path`` and ``masters`` are the names the row reports; ``read`` (default: those) is
    where the frame and the masters directory are read, e.g. by absolute path on a cluster.
    """
    kind = "science" if science else "master"
    source = read or FrameSource(path, masters)
    try:
        with fits.open(source.path, memmap=True) as hdul:
            names = {h.name for h in hdul}
            needed = ("SCI", "ERR", "MASK") if science else ("ERR",)
            missing = [e for e in needed if e not in names]
            head = hdul[0].header
            if not science:
                imagetyp = head.get("IMAGETYP", "")
                kind = master_kind(imagetyp) or str(imagetyp).strip().lower()
            if missing:
                return _empty_row(path, kind, f"missing extension(s) {missing}")
            sci = np.asarray(hdul["SCI" if science else 0].data)
            err = np.asarray(hdul["ERR"].data)
            mask = np.asarray(hdul["MASK"].data) if science else None
            row = _empty_row(path, kind, None)  # type: ignore[arg-type]
            row["shape"] = "x".join(str(n) for n in sci.shape)
            row["filter"] = str(head["FILTER"]).strip() if head.get("FILTER") else None
            row["exptime"] = float(head.get("EXPTIME", np.nan))
            row["mjd"] = _mjd(head["DATE-OBS"]) if "DATE-OBS" in head else float("nan")
            finite = np.isfinite(sci)
            row["sci_finite_fraction"] = _fraction(finite)
            row["sci_median"] = float(np.median(sci[finite])) if finite.any() else float("nan")
            good = np.isfinite(err)
            unmasked = np.ones(err.shape, bool) if mask is None else mask == 0
            row["err_positive_fraction"] = _fraction((good & (err > 0))[unmasked])
            row["err_nonnegative_fraction"] = _fraction(good & (err >= 0))
            if mask is not None:
                row["mask_dtype"] = str(mask.dtype.name)
                if mask.dtype.kind in "iu":
                    row["mask_unknown_bits"] = int(
                        np.count_nonzero((mask | _KNOWN_BITS) != _KNOWN_BITS)
                    )
                named = masters_used(head.get("HISTORY", []))
                row["history_masters"] = len(named)
                row["masters_check"] = _masters_check(named, masters, hashes, base=source.masters)
            return row
    except (OSError, ValueError, TypeError, KeyError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        text = text.replace(str(source.path), path.as_posix())  # the name the row reports
        return _empty_row(path, kind, f"not a readable FITS file ({text})")


@dataclass(frozen=True)
class FrameSource:
    """Where a frame and its masters directory are read (absolute paths for a cluster task)."""

    path: Path
    masters: Path


def frame_task(
    item: tuple[Path, Path],
    *,
    science: bool,
    masters: tuple[Path, Path],
    hashes: Mapping[str, str | None],
) -> tuple[dict[str, Any], str | None]:
    """:func:`frame_row` as a compute task (:meth:`astropipe.compute.Workers.map`).

    Parameters
    ----------
    item
        ``(name, absolute path)`` of the frame.
    science
        A science frame (else a master).
    masters
        ``(name, absolute path)`` of the masters directory.
    hashes
        Master file name → SHA-256 already known (the masters' own tasks return them).

    Returns
    -------
    tuple
        The row, and the file's SHA-256 for a master (None for a science frame).
    """
    name, path = item
    row = frame_row(
        name,
        science=science,
        masters=masters[0],
        hashes=dict(hashes),
        read=FrameSource(path, masters[1]),
    )
    if science:
        return row, None
    try:
        return row, sha256_file(path)
    except OSError:  # left to the science rows that name it, as for a master not listed
        return row, None


def _files(directory: Path, pattern: str) -> Iterable[Path]:
    return sorted(p for p in directory.glob(pattern) if p.is_file())


def frames_table(cfg: FramesConfig, *, pool: Workers | None = None) -> pd.DataFrame:
    """One row per master then per science frame, sorted by file within each directory.

    Each frame is one task on ``pool`` (:func:`astropipe.compute.workers`; in this thread if
    None): the masters first, whose tasks also hash them, then the science frames, which
    check the masters their HISTORY names against those hashes. Rows come back in order.
    """
    masters, science = Path(cfg.masters), Path(cfg.science)
    mdir = (masters, masters.resolve())

    def run(items: list[tuple[Path, Path]], **kw: Any) -> Iterable[tuple[dict[str, Any], Any]]:
        if pool is None:
            return (frame_task(item, **kw) for item in items)
        return pool.map(frame_task, items, **kw)

    master_files = [(p, p.resolve()) for p in _files(masters, cfg.pattern)]
    rows: list[dict[str, Any]] = []
    hashes: dict[str, str | None] = {}
    for (p, _), (row, sha) in zip(
        master_files, run(master_files, science=False, masters=mdir, hashes={}), strict=True
    ):
        rows.append(row)
        if sha is not None:
            hashes[p.relative_to(masters).as_posix()] = sha
    science_files = [(p, p.resolve()) for p in _files(science, cfg.pattern)]
    rows += [row for row, _ in run(science_files, science=True, masters=mdir, hashes=hashes)]
    df = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    # Numbers as float64: NaN where a row has no such value (masters have no MASK or EXPTIME).
    for col in _NUMERIC:
        df[col] = df[col].astype("float64")
    log.info("frames: %d files summarised", len(df))
    return df


def _on(kinds: Iterable[str]) -> Mapping[str, Any]:
    kinds = list(kinds)
    if len(kinds) == 1:
        return {"row_condition": Column("kind") == kinds[0]}
    return {"row_condition": Column("kind").is_in(kinds)}


def _only(rule: Rule, kinds: Iterable[str]) -> Rule:
    kinds = list(kinds)
    return Rule(rule.kind, {**rule.kwargs, **_on(kinds)}, f"{rule.text}, {'/'.join(kinds)} rows")


def _not_null(col: str, text: str) -> Rule:
    return Rule(gxe.ExpectColumnValuesToNotBeNull, {"column": col}, text)


def frames_contract(cfg: FramesConfig) -> Contract:
    """Contract of the frames summary: readable, finite, positive ERR, known bits, masters."""
    fin = cfg.min_finite_fraction
    rules = [Rule(gxe.ExpectTableRowCountToBeBetween, {"min_value": 1}, "at least one frame")]
    rules += [
        Rule(gxe.ExpectColumnToExist, {"column": c}, f"column {c} exists") for c in FRAME_COLUMNS
    ]
    rules += [
        unique(["file"]),
        Rule(
            gxe.ExpectColumnValuesToBeNull,
            {"column": "problem"},
            "every file readable, with its extensions (science: SCI, ERR, MASK; master: ERR)",
        ),
        in_set("kind", KINDS),
        Rule(
            gxe.ExpectColumnValuesToBeBetween,
            {"column": "sci_finite_fraction", "min_value": fin, "max_value": 1.0},
            f"SCI finite on >= {fin * 100:g}% of pixels",
        ),
        _not_null("sci_median", "median of SCI is finite"),
        _only(
            Rule(
                gxe.ExpectColumnValuesToBeBetween,
                {"column": "err_positive_fraction", "min_value": cfg.min_err_positive_fraction},
                f"ERR > 0 on >= {cfg.min_err_positive_fraction * 100:g}% of unmasked pixels",
            ),
            ["science"],
        ),
        Rule(
            gxe.ExpectColumnValuesToBeBetween,
            {"column": "err_nonnegative_fraction", "min_value": 1.0, "max_value": 1.0},
            "ERR finite and >= 0 on every pixel (a median master of equal frames may have 0)",
        ),
        _only(
            Rule(
                gxe.ExpectColumnValuesToBeBetween,
                {"column": "exptime", "min_value": 0.0, "strict_min": True},
                "EXPTIME > 0 s",
            ),
            ["science"],
        ),
        _only(_not_null("mjd", "DATE-OBS present and ISO (mjd non-null)"), ["science"]),
        between("mjd", *cfg.mjd, unit="d"),
        _only(_not_null("filter", "FILTER present"), ["science", "flat"]),
        in_set("filter", cfg.filters),
        _only(in_set("mask_dtype", MASK_DTYPES), ["science"]),
        Rule(
            gxe.ExpectColumnValuesToBeBetween,
            {"column": "mask_unknown_bits", "min_value": 0, "max_value": 0},
            "MASK uses only the known bits "
            + ", ".join(f"{v} {k}" for k, v in MASK_BITS.items())
            + " (pixels with other bits)",
        ),
        _only(
            Rule(
                gxe.ExpectColumnValuesToBeBetween,
                {"column": "history_masters", "min_value": 2},
                "HISTORY names >= 2 masters (bias and flat at least)",
            ),
            ["science"],
        ),
        _only(in_set("masters_check", ["ok"]), ["science"]),
    ]
    return Contract("frames", dict.fromkeys(FRAME_COLUMNS, ()), tuple(rules), key="file")
