"""Grouping and validation: which frames make which master, and which masters each science
frame uses. Everything is checked here, before any pixel is read or any file written, so a bad
input set fails in seconds with one clear message and leaves the outputs as they were.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from astropipe.calibration.frames import FrameInfo, by_kind
from astropipe.errors import ConfigError, GridMismatchError, InputFileError, MissingInputError

__all__ = ["MasterSpec", "SciencePlan", "CalibrationPlan", "make_plan", "group_label"]

log = logging.getLogger(__name__)

Group = tuple[str, tuple[int, int]]


def group_label(group: Group, filt: str | None = None) -> str:
    """A file-name-safe label such as ``STE3-CCD_1x1_R``."""
    inst = re.sub(r"[^A-Za-z0-9.+-]+", "-", group[0]).strip("-") or "unknown"
    label = f"{inst}_{group[1][0]}x{group[1][1]}"
    if filt is not None:
        label += "_" + (re.sub(r"[^A-Za-z0-9.+-]+", "-", filt).strip("-") or "none")
    return label


@dataclass(frozen=True)
class MasterSpec:
    """One master to build: its kind, group, filter (flats) and input frames."""

    kind: str
    group: Group
    filter: str | None
    frames: tuple[FrameInfo, ...]

    @property
    def name(self) -> str:
        """Output file stem, e.g. ``bias_STE3-CCD_1x1``."""
        return (
            f"{self.kind}_{group_label(self.group, self.filter if self.kind == 'flat' else None)}"
        )


@dataclass(frozen=True)
class SciencePlan:
    """A science frame and the names of the masters it is calibrated with."""

    frame: FrameInfo
    bias: str
    dark: str | None
    flat: str


@dataclass
class CalibrationPlan:
    """Masters in build order (biases, darks, flats) and the science frames."""

    masters: list[MasterSpec] = field(default_factory=list)
    science: list[SciencePlan] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def master(self, name: str) -> MasterSpec:
        """The master called ``name``."""
        return next(m for m in self.masters if m.name == name)


def _check_same_grid(frames: Sequence[FrameInfo], what: str) -> None:
    """Every frame of one group must share raw shape, binning and trimmed shape."""
    first = frames[0]
    for f in frames[1:]:
        for attr in ("binning", "shape", "trimmed_shape"):
            a, b = getattr(first, attr), getattr(f, attr)
            if a != b:
                raise GridMismatchError(
                    f"{f.path}: {attr} {b} differs from {a} of {first.path} in the same {what} "
                    "group; remove one of them or move it to another input directory."
                )


def _master_for(
    frame: FrameInfo, masters: dict[tuple, MasterSpec], key: tuple, kind: str
) -> MasterSpec | None:
    spec = masters.get(key)
    if spec is not None and spec.frames[0].trimmed_shape != frame.trimmed_shape:
        raise GridMismatchError(
            f"{frame.path}: trimmed shape {frame.trimmed_shape} differs from "
            f"{spec.frames[0].trimmed_shape} of {spec.frames[0].path} ({kind} master "
            f"{spec.name}); calibrate frames only with masters from the same readout."
        )
    return spec


def _no_group(frame: FrameInfo, kind: str, available: Sequence[FrameInfo]) -> str:
    other = (
        f"; the {kind} frames found (e.g. {available[0].path}) are "
        + ", ".join(sorted({f"{f.instrument} {f.binning[0]}x{f.binning[1]}" for f in available}))
        if available
        else ""
    )
    return (
        f"{frame.path}: no {kind} frames for instrument {frame.instrument!r} binning "
        f"{frame.binning[0]}x{frame.binning[1]}{other}; add matching {kind} frames."
    )


def make_plan(
    frames: Sequence[FrameInfo], *, directory: str | Path, require_dark: bool = False
) -> CalibrationPlan:
    """Group frames into masters and assign masters to science frames.

    Raises
    ------
    MissingInputError
        No bias at all; no flat for a science frame's filter; no dark when ``require_dark``.
    GridMismatchError
        Frames of one group (or a frame and its master) differ in shape or binning; the
        message names both files.
    InputFileError
        A dark without EXPTIME.
    """
    kinds = by_kind(frames)
    plan = CalibrationPlan(counts={k: len(v) for k, v in kinds.items()})
    if not kinds["bias"]:
        raise MissingInputError(
            f"{directory}: no bias frames (IMAGETYP/OBSTYPE bias, zero or 'Bias Frame'); "
            "a master bias is required, add bias frames to the input directory."
        )
    biases: dict[tuple, MasterSpec] = {}
    for group in sorted({f.group for f in kinds["bias"]}):
        members = [f for f in kinds["bias"] if f.group == group]
        _check_same_grid(members, "bias")
        biases[group] = MasterSpec("bias", group, None, tuple(members))

    def need_bias(frame: FrameInfo) -> MasterSpec:
        spec = _master_for(frame, biases, frame.group, "bias")
        if spec is None:
            others = [b for b in kinds["bias"] if b.instrument == frame.instrument] or kinds["bias"]
            raise GridMismatchError(_no_group(frame, "bias", others))
        return spec

    darks: dict[tuple, MasterSpec] = {}
    for f in kinds["dark"]:
        if f.exptime is None:
            raise InputFileError(
                f"{f.path}: dark frame without EXPTIME; add the exposure time to its header "
                "(the master dark is per second)."
            )
        if f.exptime <= 0:
            raise InputFileError(f"{f.path}: dark frame with EXPTIME={f.exptime}; expected > 0.")
        need_bias(f)
    for group in sorted({f.group for f in kinds["dark"]}):
        members = [f for f in kinds["dark"] if f.group == group]
        _check_same_grid(members, "dark")
        darks[group] = MasterSpec("dark", group, None, tuple(members))

    flats: dict[tuple, MasterSpec] = {}
    for f in kinds["flat"] + kinds["science"]:
        need_bias(f)
        if f.exptime is None and f.group in darks:
            raise InputFileError(
                f"{f.path}: {f.kind} frame without EXPTIME, needed to scale the master dark; "
                "add EXPTIME to its header."
            )
    for key in sorted({(f.group, f.filter or "") for f in kinds["flat"]}):
        members = [f for f in kinds["flat"] if (f.group, f.filter or "") == key]
        _check_same_grid(members, "flat")
        flats[key] = MasterSpec("flat", key[0], key[1] or None, tuple(members))

    for f in kinds["science"]:
        bias = need_bias(f)
        dark = _master_for(f, darks, f.group, "dark")
        if dark is None and require_dark:
            raise MissingInputError(_no_group(f, "dark", kinds["dark"]))
        if dark is None:
            log.warning("%s: no dark of its group; dark current is not subtracted", f.path)
        flat = _master_for(f, flats, (f.group, f.filter or ""), "flat")
        if flat is None:
            have = sorted({m.filter or "(none)" for m in flats.values() if m.group == f.group})
            raise MissingInputError(
                f"{f.path}: no flat for FILTER={f.filter!r} ({f.instrument} "
                f"{f.binning[0]}x{f.binning[1]}); flats found for {have or 'no filter'}; "
                "add flats in that filter."
            )
        plan.science.append(SciencePlan(f, bias.name, dark.name if dark else None, flat.name))
    plan.masters = [*biases.values(), *darks.values(), *flats.values()]
    names = [m.name for m in plan.masters]
    if len(set(names)) != len(names):
        raise ConfigError(f"{directory}: two master groups map to the same file name {names}.")
    stems: dict[str, Path] = {}
    for sp in plan.science:  # a calibrated frame is written as <stem>.fits
        other = stems.setdefault(sp.frame.path.stem, sp.frame.path)
        if other != sp.frame.path:
            raise InputFileError(
                f"{sp.frame.path}: same name as {other.name} apart from the suffix; both would "
                f"be written as {sp.frame.path.stem}.fits — rename or remove one."
            )
    return plan
