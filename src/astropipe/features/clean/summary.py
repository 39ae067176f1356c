"""Counts of what each cleaning step removed: per batch of curves, merged, then reported.

The stage cleans its light curves in batches of whole objects (possibly on other processes or
machines, where a log line would be lost). Each batch returns a :class:`StepCounts`, which only
holds sums and per-curve numbers; :meth:`StepCounts.add` merges them in batch order and
:func:`report` turns the total into the summary dict and logs the fractions in the stage's
process. :func:`summarise` is both at once, for one table.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from astropipe.features.clean import masks as M

__all__ = ["StepCounts", "count_steps", "report", "summarise"]

#: The cleaning pipeline's logger (its messages kept their name when they moved here).
log = logging.getLogger("astropipe.features.clean.pipeline")

_CURVE_KEY = ["object_id", "band", "source"]
#: 1.4826: MAD → standard deviation of a normal distribution.
_MAD_TO_STD = 1.482602218505602


@dataclass
class StepCounts:
    """Mergeable counts of a cleaned table (:func:`count_steps`).

    Attributes
    ----------
    points, kept, curves, segments
        Rows, rows no step removed, light curves, ``(curve, segment)`` pairs.
    removed
        Step name → rows with its bit (every bit of :data:`~.masks.STEP_BITS`).
    by_survey
        Survey → ``{"points": n, step name: rows with its bit}``.
    flux_mads
        Per flux curve, the median absolute deviation of its kept values from their median.
    """

    points: int = 0
    kept: int = 0
    curves: int = 0
    segments: int = 0
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(M.STEP_BITS, 0))
    by_survey: dict[str, dict[str, int]] = field(default_factory=dict)
    flux_mads: list[np.ndarray] = field(default_factory=list)

    def add(self, other: StepCounts) -> None:
        """Add ``other``'s counts to these (tables of disjoint curves)."""
        self.points += other.points
        self.kept += other.kept
        self.curves += other.curves
        self.segments += other.segments
        for name, n in other.removed.items():
            self.removed[name] += n
        for survey, counts in other.by_survey.items():
            mine = self.by_survey.setdefault(survey, dict.fromkeys(counts, 0))
            for name, n in counts.items():
                mine[name] += n
        self.flux_mads.extend(other.flux_mads)


def _flux_mads(table: pd.DataFrame) -> np.ndarray:
    """Per flux curve (sorted by key), the MAD of its kept values around their median."""
    kept = table[(table["kind"] == "flux") & ((table["clean_mask"] & M.REMOVED) == 0)]
    if kept.empty:
        return np.zeros(0)
    med = kept.groupby(_CURVE_KEY, sort=True)["value"].transform("median")
    dev = (kept["value"] - med).abs()
    return dev.groupby([kept[k] for k in _CURVE_KEY], sort=True).median().to_numpy(np.float64)


def count_steps(table: pd.DataFrame) -> StepCounts:
    """The :class:`StepCounts` of one cleaned table (no logging)."""
    cm = table["clean_mask"].to_numpy(np.uint16)
    n = len(table)
    by_survey: dict[str, dict[str, int]] = {}
    for survey, part in table.groupby("survey", sort=True):
        pm = part["clean_mask"].to_numpy(np.uint16)
        counts = {name: int(np.count_nonzero(pm & bit)) for name, bit in M.STEP_BITS.items()}
        by_survey[str(survey)] = {"points": len(part), **counts}
    segments = table.loc[table["segment"] >= 0, ["object_id", "band", "source", "segment"]]
    mads = _flux_mads(table)
    return StepCounts(
        points=n,
        kept=int(np.count_nonzero(cm & M.REMOVED == 0)),
        curves=int(table.groupby(_CURVE_KEY, sort=True).ngroups) if n else 0,
        segments=int(len(segments.drop_duplicates())),
        removed={name: int(np.count_nonzero(cm & bit)) for name, bit in M.STEP_BITS.items()},
        by_survey=by_survey,
        flux_mads=[mads] if len(mads) else [],
    )


def _median_flux_scatter_ppm(mads: list[np.ndarray]) -> float | None:
    """Median over flux curves of the robust scatter (1.4826·MAD) of the cleaned values, ppm.

    A one-number view of how flat the cleaning leaves the flux curves (what a detrending
    window sweep changes); None without flux curves. Rounded to 0.001 ppm to stay readable.
    The median does not depend on the order of the curves, so batches may come in any split.
    """
    if not mads:
        return None
    mad = np.concatenate(mads)
    return round(float(np.median(_MAD_TO_STD * mad)) * 1e6, 3)


def report(counts: StepCounts, *, warn_fraction: float) -> dict[str, Any]:
    """The summary dict of ``counts``; log each step's fraction, warn past ``warn_fraction``."""
    n = counts.points
    by_survey: dict[str, Mapping[str, int]] = {}
    for survey in sorted(counts.by_survey):
        part = counts.by_survey[survey]
        by_survey[survey] = dict(part)
        points = part["points"]
        for name, bit in M.STEP_BITS.items():
            if bit & M.REMOVED and points and part[name] / points > warn_fraction:
                log.warning(
                    "clean: step %s removed %d of %d %s points (%.1f%%, above "
                    "features.clean.warn_fraction=%g)",
                    name,
                    part[name],
                    points,
                    survey,
                    100.0 * part[name] / points,
                    warn_fraction,
                )
    removed = counts.removed
    for name, bit in M.STEP_BITS.items():
        if bit & M.REMOVED and n:
            log.info(
                "clean: %s removed %d of %d points (%.2f%%)",
                name,
                removed[name],
                n,
                100.0 * removed[name] / n,
            )
    return {
        "median_flux_scatter_ppm": _median_flux_scatter_ppm(counts.flux_mads),
        "points": n,
        "kept": counts.kept,
        "removed": {k: v for k, v in removed.items() if M.STEP_BITS[k] & M.REMOVED},
        "transit_masked": removed["transit_masked"],
        "fit_clipped": removed["fit_clipped"],
        "curves": counts.curves,
        "segments": counts.segments,
        "by_survey": by_survey,
    }


def summarise(table: pd.DataFrame, *, warn_fraction: float) -> dict[str, Any]:
    """Points removed per step (overall and per survey); warn past ``warn_fraction``."""
    return report(count_steps(table), warn_fraction=warn_fraction)
