"""Peak memory of the whole calibrate_images stage on one night of large frames.

``python -m benchmarks.calibration_peak --size 16384 --memory-limit 512MB`` writes a minimal
night (3 biases, 3 flats, 1 science frame; unsigned 16-bit, with stars and cosmic rays) of
``size x size`` pixels into ``--workdir`` (kept, reused), runs ``calibrate_images`` on it in a
child process and prints that process's peak RSS (``ru_maxrss``), its cosmic-ray children's
and the two together (sampled every 0.1 s: a short spike can be missed), and the RSS
measured as the stage starts (the footprint the band sizes leave out), against the limit, and
for scale the size of one whole-frame plane (none is held: masters and outputs go to disk band by
band). Heavy at 16k (7 x 512 MB inputs, ~4 GB outputs): run it by hand, once; it is not part
of ``python -m benchmarks`` nor of the tests.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

__all__ = ["main", "make_night"]


def _frame(path: Path, size: int, kind: str, seed: int, level: float) -> None:
    from astropy.io import fits

    if path.exists():
        return
    rng = np.random.default_rng([11, seed])
    data = np.empty((size, size), dtype=np.uint16)
    for r0 in range(0, size, 1024):  # in blocks: the generator's float64 stays small
        r1 = min(r0 + 1024, size)
        block = rng.normal(level, 8.0, (r1 - r0, size))
        if kind == "science":
            hits = rng.random(block.shape) < 2e-5  # cosmic rays
            block[hits] += rng.uniform(500, 5000, int(hits.sum()))
        data[r0:r1] = np.clip(np.rint(block), 0, 65535)
    header = fits.Header(
        [
            ("IMAGETYP", {"bias": "BIAS", "flat": "FLAT", "science": "LIGHT"}[kind]),
            ("INSTRUME", "BIGCAM"),
            ("FILTER", "R"),
            ("EXPTIME", 0.0 if kind == "bias" else 30.0),
            ("GAIN", 1.0),
            ("RDNOISE", 8.0),
            ("SATURATE", 65535),
        ]
    )
    fits.PrimaryHDU(data, header=header).writeto(path)


def make_night(directory: Path, size: int) -> Path:
    """Write (or reuse) the minimal night of ``size x size`` frames."""
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        _frame(directory / f"bias_{i}.fits", size, "bias", i, 1000.0)
        _frame(directory / f"flat_R_{i}.fits", size, "flat", 10 + i, 21000.0)
    _frame(directory / "sci_R_0.fits", size, "science", 20, 1400.0)
    return directory


def _sample_total(stop: threading.Event, peak: list[int]) -> None:
    """Every 0.1 s: the RSS of this process plus its cosmic-ray children at that moment
    (``peak[0]``), and of the children alone (``peak[1]``)."""
    import psutil

    me = psutil.Process()
    while not stop.wait(0.1):
        try:
            children = sum(c.memory_info().rss for c in me.children(recursive=True))
            total = me.memory_info().rss + children
        except psutil.Error:  # a child exited between the listing and the read
            continue
        peak[0], peak[1] = max(peak[0], total), max(peak[1], children)


def _child(night: Path, out: Path, memory_limit: str, workers: int) -> None:
    import os

    from astropipe.calibration import stage

    os.chdir(out)
    params = {
        "calibration": {"inputs": {"path": str(night)}, "memory_limit": memory_limit},
        "compute": {"workers": workers, "memory_limit": memory_limit},
    }
    footprint = stage.start_footprint()  # what stage.run measures as it starts
    total = [0, 0]
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_total, args=(stop, total), daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    metrics = stage.run(params)
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # not RUSAGE_CHILDREN: a forked child inherits this process's high-water mark, so its
    # ru_maxrss is never below this process's peak (measured: both 556 MB at 16k)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss": peak,
                "children_peak_rss": total[1],
                "sampled_total_peak": total[0],
                "start_footprint": footprint,
                "metrics": metrics,
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print the peak RSS."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--memory-limit", default="512MB")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(Path(args.child[0]), Path(args.child[1]), args.memory_limit, args.workers)
        return 0
    from astropipe.compute import parse_bytes

    work = Path(args.workdir or Path(tempfile.gettempdir()) / f"astropipe_peak_{args.size}")
    night = make_night(work / "night", args.size)
    with tempfile.TemporaryDirectory(dir=work) as out:
        cmd = [sys.executable, "-m", "benchmarks.calibration_peak", "--child", str(night), out]
        cmd += ["--memory-limit", args.memory_limit, "--workers", str(args.workers)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return 1
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    limit = parse_bytes(args.memory_limit)
    px = args.size * args.size
    worst = max(result["peak_rss"], result["sampled_total_peak"])
    print(
        f"calibrate_images, 3 bias + 3 flat + 1 science of {args.size}x{args.size}, "
        f"memory_limit={args.memory_limit}, workers={args.workers}: "
        f"peak RSS {result['peak_rss'] / 1e6:.0f} MB (stage process, ru_maxrss), "
        f"{result['children_peak_rss'] / 1e6:.0f} MB (cosmic-ray children, sampled every 0.1 s), "
        f"{result['sampled_total_peak'] / 1e6:.0f} MB (both together, sampled) "
        f"({'under' if worst <= limit else 'OVER'} the limit); start footprint "
        f"{result['start_footprint'] / 1e6:.0f} MB; in {result['seconds']:.0f} s"
    )
    print(
        "for scale, one whole-frame plane would be: float32 "
        f"{4 * px / 1e6:.0f} MB, float64 {8 * px / 1e6:.0f} MB (masters and outputs are written "
        "band by band and read back from disk, so none is held)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
