"""Find a collection's FITS files and group them into time steps.

OVRO-LWA subband images follow the naming convention of the OVRO-LWA portal ingest,
``YYYYMMDD_HHMMSS_<freq>MHz_averaged_<tag>-<stokes>-image.fits`` (e.g.
``20240524_050019_41MHz_averaged_v1-I-image.fits``): one file per subband (and Stokes
parameter) per time step, grouped by the ``YYYYMMDD_HHMMSS`` prefix. CCD frames are one file
per time step, keyed by their ``DATE-OBS``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from astropipe.errors import InputFileError, MissingInputError

__all__ = ["LWA_NAME", "LwaName", "StepSpec", "list_inputs", "parse_lwa_name", "group_lwa"]

LWA_NAME = re.compile(
    r"^(?P<date>\d{8})_(?P<time>\d{6})_(?P<freq>\d+(?:\.\d+)?)MHz_averaged_(?P<tag>.+?)"
    r"-(?P<stokes>I|Q|U|V|XX|YY|XY|YX|RR|LL|RL|LR)-image\.fits$"
)


@dataclass(frozen=True)
class LwaName:
    """The fields of an OVRO-LWA subband image file name."""

    step: str  # YYYYMMDD_HHMMSS
    freq_mhz: float
    tag: str
    stokes: str

    @property
    def isot(self) -> str:
        """The time in the name as ISO 8601 (UTC, whole seconds)."""
        d, t = self.step.split("_")
        return f"{d[:4]}-{d[4:6]}-{d[6:]}T{t[:2]}:{t[2:4]}:{t[4:]}"


@dataclass(frozen=True)
class StepSpec:
    """One time step: a sortable key and the files that make it up (sorted)."""

    key: str
    files: tuple[Path, ...]


def list_inputs(input_dir: str | Path, glob: str) -> list[Path]:
    """Return the files matching ``glob`` under ``input_dir``, sorted by path.

    Raises
    ------
    MissingInputError
        When the directory does not exist or nothing matches.
    """
    root = Path(input_dir)
    if not root.is_dir():
        raise MissingInputError(
            f"{root}: input directory not found; "
            "create it or fix zarr.collections.<name>.input_dir."
        )
    files = sorted(p for p in root.glob(glob) if p.is_file())
    if not files:
        raise MissingInputError(
            f"{root}: no file matches {glob!r}; add FITS files or fix zarr.collections.<name>.glob."
        )
    return files


def parse_lwa_name(path: Path) -> LwaName:
    """Parse an OVRO-LWA file name.

    Raises
    ------
    InputFileError
        When the name does not follow the convention (the message shows an example).
    """
    m = LWA_NAME.match(path.name)
    if m is None:
        raise InputFileError(
            f"{path}: file name does not follow "
            "YYYYMMDD_HHMMSS_<freq>MHz_averaged_<tag>-I-image.fits "
            "(e.g. 20240524_050019_41MHz_averaged_v1-I-image.fits); rename it or narrow the glob."
        )
    return LwaName(
        step=f"{m['date']}_{m['time']}",
        freq_mhz=float(m["freq"]),
        tag=m["tag"],
        stokes=m["stokes"],
    )


def group_lwa(files: Iterable[Path]) -> list[StepSpec]:
    """Group OVRO-LWA files by time step; check each step has the same subbands and Stokes.

    Raises
    ------
    InputFileError
        Two files for the same time step, frequency and Stokes parameter.
    MissingInputError
        A time step lacks a subband (or Stokes parameter) that other time steps have.
    """
    steps: dict[str, dict[tuple[float, str], Path]] = defaultdict(dict)
    for path in files:
        name = parse_lwa_name(path)
        slot = (name.freq_mhz, name.stokes)
        if slot in steps[name.step]:
            raise InputFileError(
                f"{path}: duplicate of {steps[name.step][slot]} (same time step {name.step}, "
                f"{name.freq_mhz:g} MHz, Stokes {name.stokes}); keep one of them."
            )
        steps[name.step][slot] = path
    every = sorted(set().union(*(set(s) for s in steps.values()))) if steps else []
    for key in sorted(steps):
        missing = [s for s in every if s not in steps[key]]
        if missing:
            what = ", ".join(f"{f:g} MHz {p}" for f, p in missing)
            raise MissingInputError(
                f"time step {key}: no file for {what} (other time steps have it; found "
                f"{[p.name for p in sorted(steps[key].values())]}); add the missing subband "
                "file or remove this time step's files."
            )
    return [StepSpec(key=k, files=tuple(sorted(steps[k].values()))) for k in sorted(steps)]
