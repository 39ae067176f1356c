"""Splitting a light curve at gaps in time."""

from __future__ import annotations

import numpy as np

__all__ = ["segment_ids", "short_segments"]


def segment_ids(time: np.ndarray, *, gap_threshold_hours: float) -> np.ndarray:
    """Segment number (0, 1, …) of each point of sorted ``time`` (d).

    A new segment starts after every gap longer than ``gap_threshold_hours``.
    """
    time = np.asarray(time, dtype=np.float64)
    if len(time) == 0:
        return np.zeros(0, dtype=np.int64)
    gap = (time[1:] - time[:-1]) > gap_threshold_hours / 24.0
    return np.concatenate([[0], np.cumsum(gap)]).astype(np.int64)


def short_segments(segments: np.ndarray, *, min_points: int) -> np.ndarray:
    """True for the points of a segment with fewer than ``min_points`` points."""
    segments = np.asarray(segments, dtype=np.int64)
    if len(segments) == 0:
        return np.zeros(0, dtype=bool)
    counts = np.bincount(segments)
    return counts[segments] < min_points
