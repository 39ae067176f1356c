"""Curves per second: astropipe's ``compute_features`` against light-curve's ``Extractor.many``.

Input: 10,000 synthetic magnitude light curves of 1,000 points (sorted times, a trend, a
sinusoid, noise and per-point errors; ``--quick``: 1,000 curves). Both sides compute the
features they share — light-curve's Mean, Median, StandardDeviation, Skew, Kurtosis,
Amplitude, MedianAbsoluteDeviation, LinearTrend, BeyondNStd(1, 2),
InterPercentileRange(0.05, 0.1, 0.2), StetsonK, Eta and LinearFit — on one core: light-curve
with ``n_jobs=1``; astropipe with the periodogram and CDPP switched off (it still computes its
own extra columns: times, peak, rise and decay). Each side gets its native input: light-curve
a list of ``(t, m, sigma)`` arrays (``sorted=True, check=False``), astropipe the long points
table of :mod:`astropipe.features.extract` (it sorts and groups it itself).
"""

from __future__ import annotations

import argparse
import os
import time

import light_curve as lcf
import numpy as np
import pandas as pd

from astropipe.features.extract import ExtractConfig, compute_features

EXTRACTORS = (
    lcf.Mean(),
    lcf.Median(),
    lcf.StandardDeviation(),
    lcf.Skew(),
    lcf.Kurtosis(),
    lcf.Amplitude(),
    lcf.MedianAbsoluteDeviation(),
    lcf.LinearTrend(),
    lcf.BeyondNStd(1.0),
    lcf.BeyondNStd(2.0),
    lcf.InterPercentileRange(0.05),
    lcf.InterPercentileRange(0.1),
    lcf.InterPercentileRange(0.2),
    lcf.StetsonK(),
    lcf.Eta(),
    lcf.LinearFit(),
)


def make_curves(n_curves: int, n_points: int, *, seed: int = 0) -> pd.DataFrame:
    """The points table of ``n_curves`` magnitude curves, sorted by (object_id, band, mjd)."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(58000.0, 59000.0, (n_curves, n_points)), axis=1)
    period = rng.uniform(0.3, 30.0, (n_curves, 1))
    phase = 2 * np.pi * (t - 58000.0) / period
    m = 18.0 + 1e-4 * (t - 58000.0) + 0.3 * np.sin(phase) + rng.normal(0, 0.05, t.shape)
    err = rng.uniform(0.02, 0.08, t.shape)
    ids = np.array([f"ZTF{i:08d}" for i in range(n_curves)])
    return pd.DataFrame(
        {
            "object_id": np.repeat(ids, n_points),
            "band": "zr",
            "survey": "ztf",
            "mjd": t.ravel(),
            "value": m.ravel(),
            "err": err.ravel(),
            "kind": "mag",
        }
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_features")
    ap.add_argument("--quick", action="store_true", help="1,000 curves instead of 10,000")
    ap.add_argument("--curves", type=int, default=None)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each side")
    args, _ = ap.parse_known_args(argv)
    n_curves = args.curves or (1_000 if args.quick else 10_000)
    points = make_curves(n_curves, args.points)
    arrays = [
        (g["mjd"].to_numpy(), g["value"].to_numpy(), g["err"].to_numpy())
        for _, g in points.groupby("object_id", sort=True)
    ]
    ext = lcf.Extractor(*EXTRACTORS)
    cfg = ExtractConfig.common_only()

    def ref() -> None:
        ext.many(arrays, n_jobs=1, sorted=True, check=False)

    def ours() -> None:
        compute_features(points, cfg=cfg)

    ref()
    ours()  # warm-up: imports, caches
    print(
        f"{n_curves} curves x {args.points} points, {len(EXTRACTORS)} light-curve extractors "
        f"({len(ext.names)} values), 1 core (os.cpu_count() = {os.cpu_count()})"
    )
    print(f"{'run':>4s} {'light-curve/s':>14s} {'astropipe/s':>12s} {'ratio':>7s}")
    ratios = []
    for run in range(args.runs):
        t0 = time.perf_counter()
        ref()
        t_ref = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours()
        t_ours = time.perf_counter() - t0
        ratios.append(t_ref / t_ours)
        print(f"{run + 1:4d} {n_curves / t_ref:14.0f} {n_curves / t_ours:12.0f} {ratios[-1]:7.2f}")
    print(f"ratio astropipe / light-curve: {min(ratios):.2f}-{max(ratios):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
