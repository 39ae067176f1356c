"""Cleaning + detrending one TESS sector: astropipe against lightkurve's ``flatten()``.

Input: the real tess-data-alerts sector-1 light curve of TIC 25155310 (20076 cadences, 19261
with a finite time; 18103 after lightkurve's default quality mask — one sector at 2-min
cadence). With ``--sectors K`` it is concatenated K times (times shifted by the sector span) to
show how the cost grows. Everything runs in this process, one core, best of ``--repeat``:

* reference: ``LightCurve.flatten()`` (window 101, polyorder 2, sigma 3, 3 iterations) on a
  float64 LightCurve of the quality-masked cadences (the light curve read once, outside the
  timing);
* ``flatten``: :func:`astropipe.features.clean.flatten` on the same arrays — checked equal to
  the reference to 1e-10 relative;
* ``clean_curve``: the whole default cleaning of the raw cadences — quality, non-finite,
  outliers (sigma on the running-median residual), gaps, the same flatten per segment,
  median normalisation.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from astropipe.config import find_root
from astropipe.features.clean import CleanConfig, clean_curve, flatten
from astropipe.tess import read_lightcurve_fits
from astropipe.tess.quality import quality_bitmask

SAMPLE = "data/sample/tess/hlsp_tess-data-alerts_tess_phot_00025155310-s01_tess_v1_lc.fits"


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_clean")
    ap.add_argument("--quick", action="store_true", help="3 repeats instead of 10")
    ap.add_argument("--sectors", type=int, default=1, help="concatenate the sector K times")
    ap.add_argument("--repeat", type=int, default=None)
    args = ap.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import lightkurve as lk

    table = read_lightcurve_fits(find_root() / SAMPLE)
    df = table.to_pandas() if hasattr(table, "to_pandas") else table
    t0 = df["mjd"].to_numpy(np.float64)
    f0 = df["flux"].to_numpy(np.float64)
    e0 = df["flux_err"].to_numpy(np.float64)
    q0 = df["quality"].to_numpy(np.int64)
    span = t0[-1] - t0[0] + 2.0
    k = args.sectors
    t = np.concatenate([t0 + i * span for i in range(k)])
    f, e, q = np.tile(f0, k), np.tile(e0, k), np.tile(q0, k)
    good = (q & quality_bitmask("tess", "default")) == 0
    tg, fg, eg = t[good], f[good], e[good]
    lc = lk.LightCurve(time=tg, flux=fg, flux_err=eg)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lc.flatten()
        t_ref = _best(lc.flatten, repeat)
    ours = flatten(tg, fg)
    a = np.asarray(ref.flux.value, dtype=np.float64)
    rel = float(np.nanmax(np.abs(ours.flat - a) / np.abs(a)))
    same_nan = bool((np.isnan(a) == np.isnan(ours.flat)).all())
    t_flat = _best(lambda: flatten(tg, fg), repeat)
    cfg = CleanConfig()
    bad = (q & quality_bitmask("tess", "default")) != 0
    t_clean = _best(lambda: clean_curve(t, f, e, kind="flux", cfg=cfg, quality_bad=bad), repeat)

    print(
        f"{len(t)} cadences ({k} sector(s)), {len(tg)} after the default quality mask; "
        f"best of {repeat}, one core"
    )
    print(f"flatten vs lightkurve: max relative difference {rel:.1e}, NaNs equal: {same_nan}")
    print(f"{'':46s} {'ms':>8s} {'ratio vs lightkurve':>20s}")
    rows = [
        ("lightkurve LightCurve.flatten()", t_ref),
        ("astropipe flatten (same cadences)", t_flat),
        ("astropipe clean_curve (quality..normalise)", t_clean),
    ]
    for name, sec in rows:
        print(f"{name:46s} {sec * 1e3:8.1f} {t_ref / sec:20.1f}")
    return 0 if rel <= 1e-10 and same_nan else 1


if __name__ == "__main__":
    raise SystemExit(main())
