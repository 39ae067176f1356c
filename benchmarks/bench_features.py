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

``--rss N [N ...]`` instead measures the peak memory of the whole build_lightcurve_features
stage (:func:`astropipe.features.stage.run`: cleaning, features, every output written) on N
synthetic magnitude light curves of ``--points`` points each (one ``object_id`` and band per
curve, written sorted in row groups of about 131,000 rows, as ingest_ztf writes its table),
each size in a fresh interpreter whose own peak RSS (``VmHWM``) is reported, with its worker
processes' ``ru_maxrss`` under ``processes`` (an upper bound). The periodogram is off there (it
costs time per curve, not memory per batch)::

    python -m benchmarks.bench_features --rss 1000 10000 100000 --points 100
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import light_curve as lcf
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

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


def write_lightcurves(path: Path, n_curves: int, n_points: int, *, seed: int = 0) -> int:
    """Write ``n_curves`` magnitude curves in the common light-curve schema, a few thousand
    curves at a time (the writer's memory stays small); return the number of points."""
    from astropipe.lightcurve import LIGHTCURVE_SCHEMA, to_lightcurve_table

    per = max(1, (1 << 17) // n_points)  # curves per written chunk
    with pq.ParquetWriter(path, LIGHTCURVE_SCHEMA, compression="zstd") as writer:
        for first in range(0, n_curves, per):
            pts = make_curves(min(per, n_curves - first), n_points, seed=seed + first)
            ids = np.array([f"ZTF{first + i:08d}" for i in range(min(per, n_curves - first))])
            frame = pd.DataFrame(
                {
                    "object_id": np.repeat(ids, n_points),
                    "survey": "ZTF",
                    "source": "alert",
                    "band": "zr",
                    "mjd": pts["mjd"].to_numpy(),
                    "mag": pts["value"].to_numpy(),
                    "mag_err": pts["err"].to_numpy(),
                    "is_upper_limit": False,
                    "flags": np.int64(0),
                }
            )
            writer.write_table(to_lightcurve_table(frame).cast(LIGHTCURVE_SCHEMA))
    return n_curves * n_points


def _stage_params(inputs: Path, work: Path, scheduler: str, workers: int) -> dict:
    out = {
        "features": "features.parquet",
        "metrics": "metrics.json",
        "clean": "lightcurves_clean.parquet",
        "plot_lightcurves": "lc.csv",
        "plot_features": "features.csv",
    }
    return {
        "features": {
            "inputs": [str(inputs)],
            "extract": {"periodogram": {"enabled": False}},
            "outputs": {k: str(work / v) for k, v in out.items()},
        },
        "compute": {"scheduler": scheduler, "workers": workers},
    }


def _hwm_mb() -> float:
    """This process's own peak RSS (MB): ``VmHWM``, which starts afresh at ``exec``.

    ``ru_maxrss`` would not do: Linux carries a process's high-water mark over ``fork`` and
    ``exec``, so a child started by a big parent reports at least the parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_child(inputs: str, work: str, scheduler: str, workers: int) -> None:
    from astropipe.features.stage import run  # imports are not measured

    start = _hwm_mb()
    t0 = time.perf_counter()
    run(_stage_params(Path(inputs), Path(work), scheduler, workers))
    sec = time.perf_counter() - t0
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"seconds": sec, "start_mb": start, "rss_mb": _hwm_mb(), "kids_mb": kids}))


def rss_table(sizes: list[int], n_points: int, scheduler: str, workers: int) -> None:
    """Print the stage's peak RSS at each number of curves (each in a fresh interpreter)."""
    print(
        f"build_lightcurve_features, {n_points} points per curve, periodogram off, "
        f"compute.scheduler={scheduler} x{workers}"
    )
    print(
        f"{'curves':>8s} {'points':>11s} {'input MB':>9s} {'seconds':>8s} {'curves/s':>9s} "
        f"{'start MB':>9s} {'peak RSS MB':>12s} {'workers MB*':>12s}"
    )
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
            inputs = Path(tmp) / "lightcurves.parquet"
            points = write_lightcurves(inputs, n, n_points)
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.bench_features",
                    "--child",
                    str(inputs),
                    tmp,
                    scheduler,
                    str(workers),
                ],  # fmt: skip
                check=True,
                capture_output=True,
                text=True,
                cwd=Path(__file__).resolve().parents[1],
            )
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            size = inputs.stat().st_size / 1e6
            shutil.rmtree(Path(tmp), ignore_errors=True)
        print(
            f"{n:8d} {points:11d} {size:9.1f} {r['seconds']:8.1f} {n / r['seconds']:9.0f} "
            f"{r['start_mb']:9.0f} {r['rss_mb']:12.0f} {r['kids_mb']:12.0f}",
            flush=True,
        )
    print(
        "start: after the imports; peak: VmHWM of the stage process; *processes only: the "
        "workers' ru_maxrss, an upper bound (it includes the stage process's size when it "
        "started them)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_features")
    ap.add_argument("--quick", action="store_true", help="1,000 curves instead of 10,000")
    ap.add_argument("--curves", type=int, default=None)
    ap.add_argument("--points", type=int, default=None, help="points per curve (1000; --rss: 100)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each side")
    ap.add_argument("--rss", type=int, nargs="+", default=None, help="stage peak RSS at N curves")
    ap.add_argument("--scheduler", default="threads", help="--rss: compute.scheduler")
    ap.add_argument("--workers", type=int, default=2, help="--rss: compute.workers")
    ap.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    args, _ = ap.parse_known_args(argv)
    if args.child:
        inputs, work, scheduler, workers = args.child
        _rss_child(inputs, work, scheduler, int(workers))
        return 0
    if args.rss:
        rss_table(args.rss, args.points or 100, args.scheduler, args.workers)
        return 0
    n_curves = args.curves or (1_000 if args.quick else 10_000)
    n_points = args.points or 1000
    points = make_curves(n_curves, n_points)
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
        f"{n_curves} curves x {n_points} points, {len(EXTRACTORS)} light-curve extractors "
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
