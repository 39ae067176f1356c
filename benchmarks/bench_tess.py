"""Light-curve files per second: astropipe's TESS/Kepler reader against ``lightkurve.read``.

The real sample light curves (SPOC TESS, tess-data-alerts, eleanor-lite, Kepler long and short
cadence, K2) are hard-linked round-robin to at least 500 files. Both sides run in this process,
one core, on the same files, page cache warm:

* reference: ``lightkurve.read(f).to_pandas()`` for every file (its default quality mask);
* ours: :func:`astropipe.tess.read_lightcurve_fits` for every file, each table appended to one
  Parquet file as it is read (what ingest_tess will write), so memory does not grow with the
  number of files. The peak-RSS growth between a half-size and a full-size run shows that.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import pyarrow.parquet as pq

from astropipe.config import find_root
from astropipe.tess import TESS_LIGHTCURVE_SCHEMA, read_lightcurve_fits


def build_batch(n_files: int, root: Path, work: Path) -> list[Path]:
    """``n_files`` names for the real sample light curves, round-robin (hard links if possible)."""
    sources = sorted(
        [*(root / "data/sample/tess").glob("*.fits"), *(root / "data/sample/kepler").glob("*.fits")]
    )
    out = []
    for i in range(n_files):
        src = sources[i % len(sources)]
        dst = work / f"{i:05d}_{src.name}"
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
        out.append(dst)
    return out


def ours(files: list[Path], out: Path) -> int:
    rows = 0
    with pq.ParquetWriter(out, TESS_LIGHTCURVE_SCHEMA, compression="zstd") as writer:
        for f in files:
            t = read_lightcurve_fits(f).replace_schema_metadata(None)
            writer.write_table(t)
            rows += t.num_rows
    return rows


def reference(files: list[Path]) -> int:
    import lightkurve as lk

    rows = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in files:
            rows += len(lk.read(str(f)).to_pandas())
    return rows


def timed(fn, *args: object, repeat: int) -> float:
    """Best of ``repeat`` wall-clock timings of ``fn(*args)``, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_tess")
    ap.add_argument("--quick", action="store_true", help="500 files, one timing each")
    ap.add_argument("--files", type=int, default=None, help="files in the batch (>= 500)")
    args, _ = ap.parse_known_args(argv)
    n = max(500, args.files or (500 if args.quick else 2000))
    repeat = 1 if args.quick else 3
    root = find_root()
    scratch = Path(__file__).parent / "_work"
    scratch.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tess.", dir=scratch))
    try:
        files = build_batch(n, root, work)
        out = work / "lightcurves.parquet"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import lightkurve  # noqa: F401  (import time is not part of the timing)
        ours(files[:20], out)  # warm the page cache and imports on both sides
        reference(files[:20])
        # memory: ours on half the batch, then on all of it; the peak should not move
        ours(files[: n // 2], out)
        rss_half = _peak_rss_mb()
        rows = ours(files, out)
        rss_full = _peak_rss_mb()
        t_ours = timed(ours, files, out, repeat=repeat)
        t_ref = timed(reference, files, repeat=repeat)
        ref_rows = reference(files[:14])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{n} light-curve files ({rows} cadences read by ours, all kept and flagged;")
    print(f"lightkurve drops its default-masked cadences: {ref_rows} rows in the first 14 files)")
    print(f"{'':44s} {'seconds':>8s} {'files/s':>9s} {'ratio vs ref':>13s}")
    for name, sec in (
        ("lightkurve.read(f).to_pandas() (reference)", t_ref),
        ("astropipe read_lightcurve_fits → Parquet", t_ours),
    ):
        print(f"{name:44s} {sec:8.2f} {n / sec:9.0f} {t_ref / sec:13.2f}")
    print(
        f"peak RSS after ours on {n // 2} files: {rss_half:.0f} MB; on {n} files: "
        f"{rss_full:.0f} MB (growth {rss_full - rss_half:+.0f} MB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
