"""Calibrating science frames and writing calibrated frames and masters as FITS.

A calibrated frame is ``(raw - overscan)[trim] · gain - bias - dark · t``, divided by the flat,
in electrons, written with three image extensions: ``SCI`` (float32), ``ERR`` (float32, one
standard deviation) and ``MASK`` (uint8 bits, see :data:`MASK_BITS`). The primary header keeps
the raw header (DATE-OBS, FILTER, EXPTIME, OBJECT, WCS with CRPIX shifted by the trim) and
adds HISTORY cards naming each master and its SHA-256. Nothing time-dependent is written, so
the same inputs give byte-identical files.

Nothing whole-frame is held: the frame is calibrated in bands of rows, each band's SCI, ERR
and MASK written to its planes (the output FITS file, :func:`write_science`; or arrays in
memory), the masters' rows read back from their files. Cosmic rays are then found on bands
read back from the written planes, with their context rows, in tiles of columns (see
:mod:`~astropipe.calibration.cosmics`), on a large frame in a child process that reads them
from the file itself (:mod:`~astropipe.calibration.crchild`: astroscrappy leaks), and the MASK
rows are rewritten with bit 4.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from astropipe.calibration.calibrate import (
    BAD_FLAT,
    COSMIC_RAY,
    MASK_BITS,
    NONFINITE,
    SATURATED,
    flat_bad_pixels,
    flat_correct,
    master_history,
    science_error,
    subtract_bias,
    subtract_dark,
)
from astropipe.calibration.config import CalibrationConfig
from astropipe.calibration.cosmics import cosmics_margin, cosmics_rows
from astropipe.calibration.crchild import PassSpec, StoredRows, run_in_child
from astropipe.calibration.frames import FrameInfo, read_region
from astropipe.calibration.masters import CHECKSUM_COMMENT, Master, band_loader, detector_for
from astropipe.calibration.median import exact_median
from astropipe.calibration.planes import ArrayPlane, Plane, band_starts, read_bands
from astropipe.io.atomic import atomic_path
from astropipe.io.fitsstream import FitsPlane, ImageSpec, StreamedFits

__all__ = [
    "Calibrated",
    "calibrate_frame",
    "science_band_rows",
    "cosmics_band_rows",
    "cosmics_leak_bytes",
    "cosmics_handed_pixels",
    "LEAK_BYTES_PER_PIXEL",
    "science_tile_cols",
    "output_header",
    "science_header",
    "write_science",
    "sky_median",
]


#: Keywords never copied from a raw header: structure, scaling, and sections that the trim
#: made wrong.
_DROP = {
    "SIMPLE",
    "BITPIX",
    "NAXIS",
    "NAXIS1",
    "NAXIS2",
    "EXTEND",
    "BZERO",
    "BSCALE",
    "BLANK",
    "XTENSION",
    "PCOUNT",
    "GCOUNT",
    "EXTNAME",
    "BIASSEC",
    "TRIMSEC",
    "DATASEC",
    "CCDSEC",
    "CHECKSUM",
    "DATASUM",
    "BUNIT",
    "HISTORY",
    "COMMENT",
    "",
}


@dataclass
class Calibrated:
    """A calibrated science frame: its SCI, ERR and MASK planes and its pixel counts."""

    frame: FrameInfo
    sci_plane: Plane
    err_plane: Plane
    mask_plane: Plane
    read_noise: float
    counts: dict[str, int]  # cosmic_ray, saturated, bad_flat, nonfinite pixels
    path: Path | None = None  # its FITS file, when written

    @property
    def sci(self) -> np.ndarray:
        """The whole SCI plane (reads every row: small frames and tests)."""
        return self.sci_plane.read(0, self.sci_plane.shape[0])

    @property
    def err(self) -> np.ndarray:
        """The whole ERR plane."""
        return self.err_plane.read(0, self.err_plane.shape[0])

    @property
    def mask(self) -> np.ndarray:
        """The whole MASK plane."""
        return self.mask_plane.read(0, self.mask_plane.shape[0])

    @property
    def cosmic_pixels(self) -> int:
        """Number of pixels flagged as cosmic rays."""
        return self.counts["cosmic_ray"]


#: Bytes of working memory per pixel of a band while it is calibrated: the float64 raw,
#: electrons, signal, SCI and the temporaries of the error propagation (measured peak ~13
#: float64 arrays), the masters' float32 rows, the MASK byte and the float32 copies on
#: their way to disk.
_BYTES_PER_BAND_PIXEL = 128

#: Bytes per pixel of the whole-width rows (band and context) the cosmic-ray pass reads: SCI,
#: ERR, their variance, MASK and two boolean planes.
_BYTES_PER_COSMICS_ROW_PIXEL = 16

#: Bytes per pixel of one astroscrappy tile (with its context): the float32 image, variance
#: and mask copies handed to it and its own planes (measured ~54 bytes a pixel with
#: astroscrappy 1.3, including its 2x-subsampled Laplacian).
_BYTES_PER_COSMICS_TILE_PIXEL = 80

#: Bytes astroscrappy 1.3.0 leaks per pixel of each image handed to it (measured 1.000 with
#: and without ``inmask``/``invar`` and ``malloc_trim``; see :mod:`~astropipe.calibration.crchild`).
LEAK_BYTES_PER_PIXEL = 1

#: Fewest rows per band and columns per tile, whatever the budget: progress with a tiny limit.
_MIN_BAND_ROWS = 8
_MIN_TILE_COLS = 64

#: Least leak allowed to build up in the cosmic-ray child before it is replaced.
_MIN_LEAK_BYTES = 32 * 10**6


def science_band_rows(
    shape: tuple[int, int], *, budget_bytes: int, held_bytes: int = 0, margin: int = 0
) -> int:
    """Rows per band of the calibration pass: :data:`_BYTES_PER_BAND_PIXEL` bytes a band
    pixel in ``budget_bytes`` less ``held_bytes`` (what is already spoken for). At least
    :data:`_MIN_BAND_ROWS` rows. ``margin`` is accepted for the callers of the cosmic-ray
    sizing and ignored: that pass has its own rows (:func:`cosmics_band_rows`)."""
    rows, cols = shape
    free = max(budget_bytes - held_bytes, 0)
    calibrate = free // (_BYTES_PER_BAND_PIXEL * max(cols, 1))
    return int(min(rows, max(calibrate, _MIN_BAND_ROWS)))


def cosmics_leak_bytes(budget_bytes: int) -> int:
    """What the cosmic-ray pass lets astroscrappy's leak reach before its child process is
    replaced (see :mod:`~astropipe.calibration.crchild`): an eighth of the budget, set aside
    from the band sizes, but at least :data:`_MIN_LEAK_BYTES` so a tiny limit does not replace
    the child after every band."""
    return max(max(budget_bytes, 0) // 8, _MIN_LEAK_BYTES)


def _cosmics_work(budget_bytes: int) -> int:
    """The budget of the cosmic-ray pass's arrays: ``budget_bytes`` less its eighth for the
    leak."""
    return max(budget_bytes, 0) - max(budget_bytes, 0) // 8


def cosmics_band_rows(shape: tuple[int, int], *, budget_bytes: int, margin: int = 0) -> int:
    """Rows per band of the cosmic-ray pass (may be taller than the calibration pass's).

    Of ``budget_bytes`` less an eighth (for astroscrappy's leak), half holds the band's whole
    rows with ``margin`` context rows on each side (:data:`_BYTES_PER_COSMICS_ROW_PIXEL`), the
    other half astroscrappy's tiles (:func:`science_tile_cols`). At least
    :data:`_MIN_BAND_ROWS` rows.
    """
    rows, cols = shape
    work = _cosmics_work(budget_bytes)
    fit = work // 2 // (_BYTES_PER_COSMICS_ROW_PIXEL * max(cols, 1)) - 2 * margin
    return int(min(rows, max(fit, _MIN_BAND_ROWS)))


def science_tile_cols(
    shape: tuple[int, int], *, band_rows: int, budget_bytes: int, margin: int = 0
) -> int | None:
    """Columns per astroscrappy tile (None: whole rows) so that a tile of ``band_rows`` rows
    with its ``margin`` of context on every side fits half of ``budget_bytes`` less an
    eighth (for astroscrappy's leak)."""
    rows, cols = shape
    tall = min(rows, band_rows + 2 * margin)
    work = _cosmics_work(budget_bytes)
    fit = work // 2 // (_BYTES_PER_COSMICS_TILE_PIXEL * max(tall, 1)) - 2 * margin
    if fit >= cols:
        return None
    return int(max(fit, _MIN_TILE_COLS))


def cosmics_handed_pixels(
    shape: tuple[int, int], *, band_rows: int, tile_cols: int | None, margin: int
) -> tuple[int, int]:
    """Pixels astroscrappy is handed (tiles with their context) by the banded pass: the most
    in one band and the total over the frame; astroscrappy 1.3.0 leaks a byte for each."""
    rows, cols = shape
    width = cols if tile_cols is None else max(int(tile_cols), 1)
    if width >= cols:
        wide = cols
    else:
        wide = sum(
            min(c0 + width + margin, cols) - max(c0 - margin, 0) for c0 in range(0, cols, width)
        )
    most = total = 0
    for r0, r1 in band_starts(rows, max(int(band_rows), 1)):
        n = (min(r1 + margin, rows) - max(r0 - margin, 0)) * wide
        most, total = max(most, n), total + n
    return most, total


def calibrate_frame(
    info: FrameInfo,
    cfg: CalibrationConfig,
    *,
    bias: Master,
    flat: Master,
    dark: Master | None = None,
    band_rows: int | None = None,
    tile_cols: int | None = None,
    planes: tuple[Plane, Plane, Plane] | None = None,
    cr_band_rows: int | None = None,
    cr_tasks_per_child: int | None = None,
) -> Calibrated:
    """Calibrate one science frame with its masters; flag saturation, bad flat, NaN/inf pixels
    and cosmic rays.

    The frame is processed in bands of ``band_rows`` rows (None: the whole frame at once);
    every step is per pixel, so the result does not depend on the band height. Each band's
    SCI, ERR and MASK go to ``planes`` (None: new arrays in memory). Cosmic rays are then found
    on bands of ``cr_band_rows`` rows (None: ``band_rows``) read back with context rows, in
    tiles of ``tile_cols`` columns (None: whole rows; see
    :func:`~astropipe.calibration.cosmics.cosmics_rows`); with ``cr_tasks_per_child`` and
    planes in a file, in a child process replaced after that many bands
    (:mod:`~astropipe.calibration.crchild`: astroscrappy leaks). Pixels whose raw
    value or calibrated value is NaN or infinite keep SCI = NaN, get ERR = 0 and the MASK bit
    ``NONFINITE``; they are kept out of the cosmic-ray detection.
    """
    det = detector_for(info, cfg.detector)
    rows, cols = info.trimmed_shape
    step = rows if band_rows is None else max(int(band_rows), 1)
    load = band_loader(info, det, cfg.overscan)
    ys, xs = info.trimsec.slices if info.trimsec else (slice(0, rows), slice(None))
    t = info.exptime or 0.0
    if planes is None:
        planes = (
            ArrayPlane.empty((rows, cols), np.float32),
            ArrayPlane.empty((rows, cols), np.float32),
            ArrayPlane.empty((rows, cols), np.uint8),
        )
    sci_out, err_out, mask_out = planes
    counts = {"cosmic_ray": 0, "saturated": 0, "bad_flat": 0, "nonfinite": 0}

    def count(band: np.ndarray) -> None:
        for key, bit in (
            ("cosmic_ray", COSMIC_RAY),
            ("saturated", SATURATED),
            ("bad_flat", BAD_FLAT),
            ("nonfinite", NONFINITE),
        ):
            counts[key] += int(np.count_nonzero(band & bit))

    for r0, r1 in band_starts(rows, step):
        electrons = load(r0, r1)
        raw = read_region(info, slice(ys.start + r0, ys.start + r1), xs)
        f = flat.data_plane.read(r0, r1)
        signal = subtract_bias(electrons, bias.data_plane.read(r0, r1))
        del electrons
        d = dark.data_plane.read(r0, r1) if dark is not None else None
        if d is not None:
            signal = subtract_dark(signal, d, t)
        sci = flat_correct(signal, f)
        err = science_error(
            signal,
            read_noise_e=det.read_noise,
            flat=f,
            dark=d,
            bias_err=bias.err_plane.read(r0, r1),
            dark_err=dark.err_plane.read(r0, r1) if dark is not None else None,
            exptime=t,
            flat_err=flat.err_plane.read(r0, r1),
        )
        del signal, d
        band = np.zeros((r1 - r0, cols), dtype=np.uint8)
        band[raw >= det.saturation] |= SATURATED
        band[flat_bad_pixels(f, low=cfg.flat.bad_low, high=cfg.flat.bad_high)] |= BAD_FLAT
        bad = ~(np.isfinite(raw) & np.isfinite(sci))
        if bad.any():
            band[bad] |= NONFINITE
            sci[bad] = np.nan  # an inf is as unknown as a NaN
            err[bad] = 0.0  # ERR stays finite (the validation contract); MASK says why
        del raw, bad, f
        # float64 → float32 as numpy's assignment rounds: the whole-frame arrays' values
        sci_out.write(r0, sci.astype(np.float32))
        err_out.write(r0, err.astype(np.float32))
        del sci, err
        mask_out.write(r0, band)
        if not cfg.cosmics.enabled:
            count(band)
        elif band.any():
            counts["nonfinite"] += int(np.count_nonzero(band & NONFINITE))
    # No log here: this runs as a compute task, whose log never reaches the stage's on a
    # process or cluster worker; the caller logs counts["nonfinite"] (calibration.stage).
    if cfg.cosmics.enabled:
        counts["nonfinite"] = 0  # counted again below, with the final MASK
        margin = cosmics_margin(cfg.cosmics)
        bands = list(band_starts(rows, step if cr_band_rows is None else max(int(cr_band_rows), 1)))
        saturation = det.saturation * det.gain

        def flag(r0: int, r1: int, cr: np.ndarray) -> None:
            own = mask_out.read(r0, r1)
            own[cr] |= COSMIC_RAY
            mask_out.write(r0, own)
            count(own)

        stored = _stored(planes) if cr_tasks_per_child is not None else None
        if stored is not None:
            spec = PassSpec(
                *stored,
                read_noise=det.read_noise,
                saturation=saturation,
                options=asdict(cfg.cosmics),
                margin=margin,
                tile_cols=tile_cols,
                ignore_bits=COSMIC_RAY,
            )
            assert cr_tasks_per_child is not None
            run_in_child(spec, bands, flag, tasks_per_child=cr_tasks_per_child)
        else:
            for r0, r1 in bands:
                a0, a1 = max(r0 - margin, 0), min(r1 + margin, rows)
                # rows above r0 already carry bit 4; detection sees the flags from before it
                bad = (mask_out.read(a0, a1) & np.uint8(0xFF ^ COSMIC_RAY)) != 0
                cr = cosmics_rows(
                    sci_out.read(a0, a1),
                    err=err_out.read(a0, a1),
                    read_noise=det.read_noise,
                    saturation=saturation,
                    bad=bad,
                    cfg=cfg.cosmics,
                    keep=slice(r0 - a0, r1 - a0),
                    tile_cols=tile_cols,
                    margin=margin,
                )
                del bad
                flag(r0, r1, cr)
                del cr
    return Calibrated(info, sci_out, err_out, mask_out, det.read_noise, counts)


def _stored(planes: tuple[Plane, Plane, Plane]) -> tuple[StoredRows, ...] | None:
    """The planes as :class:`StoredRows` when all three are unscaled images of files."""
    out = []
    for plane in planes:
        if not isinstance(plane, FitsPlane) or not plane.layout.scaling.identity:
            return None
        shape = plane.layout.shape
        out.append(StoredRows(str(plane.path), plane.layout.offset, plane.layout.dtype, shape))  # type: ignore[arg-type]
    return tuple(out)


def sky_median(cal: Calibrated, *, band_rows: int) -> float | None:
    """``np.median`` of the finite SCI pixels (float32), computed over bands."""
    step = max(int(band_rows), 1)
    return exact_median(
        lambda: read_bands(cal.sci_plane, step),
        dtype=np.float32,
        max_candidates=max(step * cal.sci_plane.shape[1], 1 << 16),
    )


def output_header(info: FrameInfo) -> fits.Header:
    """The raw header without structural keywords, with the WCS shifted by the trim."""
    out = fits.Header()
    for card in info.header.cards:
        if card.keyword not in _DROP:
            out.append(card.copy() if hasattr(card, "copy") else fits.Card(*card))
    if info.trimsec is not None:
        for axis, offset in ((1, info.trimsec.x0), (2, info.trimsec.y0)):
            key = f"CRPIX{axis}"
            if key in out and offset:
                out[key] = float(out[key]) - offset
    return out


def _wcs_only(header: fits.Header) -> fits.Header:
    keep = (
        "WCSAXES",
        "CTYPE",
        "CRPIX",
        "CRVAL",
        "CDELT",
        "CUNIT",
        "CD1_",
        "CD2_",
        "PC1_",
        "PC2_",
        "CROTA",
        "EQUINOX",
        "RADESYS",
        "LONPOLE",
        "LATPOLE",
    )
    return fits.Header([c for c in header.cards if c.keyword.startswith(keep)])


def science_header(
    info: FrameInfo, *, read_noise: float, masters: Mapping[str, tuple[str, str]], ncosmic: int
) -> fits.Header:
    """Primary (and SCI) header of a calibrated frame; ``masters`` maps role → (master name,
    SHA-256 of its file)."""
    head = output_header(info)
    head["BUNIT"] = ("electron", "SCI and ERR are in electrons")
    head["GAIN"] = (1.0, "[e-/ADU] frame already converted to electrons")
    head["RDNOISE"] = (read_noise, "[e-] read noise of the raw frame")
    head["CALSTAT"] = ("OBDF", "overscan, bias, dark, flat applied")
    head["RAWFILE"] = (info.name, "raw frame this was calibrated from")
    for name, bit in MASK_BITS.items():
        head[f"MASKB{bit}"] = (name, f"MASK bit value {bit}")
    for role, (master, sha) in sorted(masters.items()):
        for card in master_history(role, f"{master}.fits", sha):
            head.add_history(card)
    head["NCOSMIC"] = (ncosmic, "pixels flagged as cosmic rays (MASK bit 4)")
    return head


def write_science(
    info: FrameInfo,
    cfg: CalibrationConfig,
    path: str | os.PathLike[str],
    *,
    bias: Master,
    flat: Master,
    dark: Master | None,
    masters: Mapping[str, tuple[str, str]],
    band_rows: int | None = None,
    tile_cols: int | None = None,
    cr_band_rows: int | None = None,
    cr_tasks_per_child: int | None = None,
) -> Calibrated:
    """Calibrate a science frame straight into its FITS file at ``path`` (atomically).

    The file holds an empty primary HDU with the header, ``SCI`` (float32, same header),
    ``ERR`` (float32) and ``MASK`` (uint8), with checksums; it is laid out first and each band
    is written at its offset, so the frame is never whole in memory. ``masters`` maps role →
    (master name, SHA-256 of its file); the band options are :func:`calibrate_frame`'s.
    Returns the frame with its planes in the file.
    """
    rows, cols = info.trimmed_shape
    read_noise = detector_for(info, cfg.detector).read_noise
    head = science_header(info, read_noise=read_noise, masters=masters, ncosmic=0)
    wcs = _wcs_only(head)
    mask_bits = tuple(
        (f"MASKB{bit}", (name, f"bit value {bit}")) for name, bit in MASK_BITS.items()
    )
    final = Path(path)
    with atomic_path(final) as tmp:
        out = StreamedFits(
            tmp,
            [
                ImageSpec(head),
                ImageSpec(head.copy(), np.float32, (rows, cols), "SCI"),
                ImageSpec(wcs.copy(), np.float32, (rows, cols), "ERR", (("BUNIT", "electron"),)),
                ImageSpec(wcs.copy(), np.uint8, (rows, cols), "MASK", mask_bits),
            ],
            checksum_comment=CHECKSUM_COMMENT,
        )
        cal = calibrate_frame(
            info,
            cfg,
            bias=bias,
            flat=flat,
            dark=dark,
            band_rows=band_rows,
            tile_cols=tile_cols,
            planes=(out.plane(1), out.plane(2), out.plane(3)),
            cr_band_rows=cr_band_rows,
            cr_tasks_per_child=cr_tasks_per_child,
        )
        ncosmic = {"NCOSMIC": cal.cosmic_pixels}
        out.finish({0: ncosmic, 1: ncosmic})
    cal.sci_plane, cal.err_plane, cal.mask_plane = (
        FitsPlane(final, out.plane(i).layout) for i in (1, 2, 3)
    )
    cal.path = final
    return cal
