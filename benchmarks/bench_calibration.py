"""Master combine: astropipe's tiled combine against ``ccdproc.combine`` on the same files.

25 bias-like frames of 2048x2048 (unsigned 16-bit FITS, read noise plus rare outliers) are
combined by median and by σ-clipped mean (center median, std, 3σ/3σ, one iteration, as
ccdproc's defaults apart from the center). Each run happens in its own subprocess, so its peak
RSS (``ru_maxrss``) is its own; the time is the combine call only (files to master array),
not the interpreter start. ccdproc runs twice: with its default ``mem_limit`` (16 GB: the
whole stack in memory) and with ``mem_limit`` set to astropipe's ``calibration.memory_limit``.
The masters are compared pixel by pixel.

``python -m benchmarks calibration [--quick]`` (``--quick``: 9 frames of 512x512).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from astropipe.compute import parse_bytes
from astropipe.config import find_root, load_params

__all__ = ["main"]

CLIP = {"low": 3.0, "high": 3.0, "cenfunc": "median", "maxiters": 1}


def make_frames(directory: Path, n: int, size: int) -> list[Path]:
    """Write ``n`` deterministic bias-like frames (reused when already present)."""
    from astropy.io import fits

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = directory / f"bias_{i:03d}.fits"
        paths.append(path)
        if path.exists():
            continue
        rng = np.random.default_rng([7, i])
        data = rng.normal(1000.0, 5.0, (size, size))
        hits = rng.random((size, size)) < 1e-4
        data[hits] += rng.uniform(200, 5000, int(hits.sum()))
        header = fits.Header(
            [
                ("IMAGETYP", "BIAS"),
                ("INSTRUME", "BENCH"),
                ("GAIN", 1.0),
                ("RDNOISE", 5.0),
                ("EXPTIME", 0.0),
                ("BUNIT", "adu"),
            ]
        )
        fits.PrimaryHDU(np.clip(np.rint(data), 0, 65535).astype(np.uint16), header=header).writeto(
            path
        )
    return paths


def _worker(args: argparse.Namespace) -> None:
    """Run one combine in this (child) process; print elapsed seconds and peak RSS as JSON."""
    import resource
    import time
    import warnings

    directory, out = Path(args.dir), Path(args.out)
    clip = args.method == "sigma_clip_mean"
    if args.worker == "astropipe":
        import dask.base

        from astropipe.calibration.combine import ClipConfig, CombineConfig
        from astropipe.calibration.config import CalibrationConfig
        from astropipe.calibration.frames import discover
        from astropipe.calibration.masters import build_masters
        from astropipe.calibration.plan import make_plan
        from astropipe.compute import ComputeConfig, scheduler

        # Import-time costs (dask looks for distributed on first use) are not combine time.
        dask.base.get_scheduler()
        cfg = CombineConfig("average" if clip else "median", ClipConfig(enabled=clip, **CLIP))
        compute = ComputeConfig(scheduler="threads", workers=args.workers)
        calib = CalibrationConfig(bias=cfg, memory_limit=args.memory_limit)
        t0 = time.perf_counter()
        frames, _ = discover(directory)
        plan = make_plan(frames, directory=directory)
        with scheduler(compute):
            (master,) = build_masters(plan, calib, workers=compute.workers).values()
        elapsed = time.perf_counter() - t0
        result = master.data
    else:
        import ccdproc

        paths = sorted(str(p) for p in directory.glob("*.fits"))
        kwargs = {"mem_limit": args.ccdproc_mem_limit} if args.ccdproc_mem_limit else {}
        if clip:
            kwargs |= {
                "sigma_clip": True,
                "sigma_clip_low_thresh": 3.0,
                "sigma_clip_high_thresh": 3.0,
                "sigma_clip_func": np.ma.median,
                "sigma_clip_dev_func": np.ma.std,
            }
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            combined = ccdproc.combine(
                paths, method="average" if clip else "median", unit="adu", **kwargs
            )
        elapsed = time.perf_counter() - t0
        result = combined.data
    np.save(out, np.asarray(result, dtype=np.float64))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": elapsed, "peak_rss": rss}))


def _child(tool: str, method: str, directory: Path, out: Path, **opts: object) -> dict[str, float]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.bench_calibration",
        "--worker",
        tool,
        "--method",
        method,
        "--dir",
        str(directory),
        "--out",
        str(out),
    ]
    for key, value in opts.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=find_root())
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} {method} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the ratio table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="9 frames of 512x512")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--workdir", default=None, help="where the frames are written (kept)")
    parser.add_argument("--worker", choices=["astropipe", "ccdproc"], help=argparse.SUPPRESS)
    parser.add_argument("--method", default="median", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--memory-limit", default="512MB", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--ccdproc-mem-limit", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args)
        return 0
    root = find_root()
    params = load_params(root / "params.yaml")
    limit_text = (params.get("calibration") or {}).get("memory_limit", "512MB")
    workers = int((params.get("compute") or {}).get("workers", 2))
    limit = parse_bytes(limit_text)
    n = args.frames or (9 if args.quick else 25)
    size = args.size or (512 if args.quick else 2048)
    workdir = (
        Path(args.workdir)
        if args.workdir
        else Path(tempfile.gettempdir()) / f"astropipe_bench_ccd_{n}x{size}"
    )
    make_frames(workdir, n, size)
    print(
        f"master combine of {n} frames of {size}x{size} (uint16 FITS); calibration.memory_limit="
        f"{limit_text}; compute.workers={workers}; each run in its own process"
    )
    header = (
        f"{'method':<16} {'tool':<28} {'seconds':>8} {'peak RSS':>10} "
        f"{'speed-up':>9} {'RSS ratio':>9} {'max rel diff':>12}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("median", "sigma_clip_mean"):
            out = Path(tmp)
            ours = _child(
                "astropipe", method, workdir, out / "ours.npy", memory_limit=limit_text,
                workers=workers,
            )  # fmt: skip
            refs = [
                ("ccdproc (mem_limit default)", _child("ccdproc", method, workdir, out / "r1.npy")),
                (
                    f"ccdproc (mem_limit={limit_text})",
                    _child("ccdproc", method, workdir, out / "r2.npy", ccdproc_mem_limit=limit),
                ),
            ]
            a = np.load(out / "ours.npy")
            diff = 0.0
            for name in ("r1.npy", "r2.npy"):
                b = np.load(out / name)
                diff = max(diff, float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30))))
            under = "under" if ours["peak_rss"] <= limit else "OVER"
            print(
                f"{method:<16} {'astropipe':<28} {ours['seconds']:8.2f} "
                f"{ours['peak_rss'] / 1e6:8.0f}MB {'1.0x':>9} {'1.0x':>9} {diff:12.1e}"
                f"   ({under} the {limit_text} limit)"
            )
            for label, ref in refs:
                speed = ref["seconds"] / ours["seconds"]
                ratio = ref["peak_rss"] / ours["peak_rss"]
                print(
                    f"{'':<16} {label:<28} {ref['seconds']:8.2f} {ref['peak_rss'] / 1e6:8.0f}MB "
                    f"{speed:8.1f}x {ratio:8.1f}x"
                )
    print("speed-up = ccdproc time / astropipe time; RSS ratio = ccdproc / astropipe peak RSS")
    print("(MB = 10^6 bytes, as calibration.memory_limit is parsed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
