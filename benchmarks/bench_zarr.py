"""Benchmark fits_to_zarr: MB/s against ``cp -r`` and the naive xarray approach; peak RSS.

Generates a zenith-phased series of OVRO-LWA-like subband images (12 subbands x 1024x1024
float32 per time step, header from the real sample, CRVAL1 advancing at the sidereal rate:
:func:`astropipe.zarrcube.simulate.noise_series`) in a temporary directory under ``/tmp`` and
converts it three ways:

- ``cp -r`` of the input directory (the I/O limit),
- astropipe's writer (one time step at a time, appends, checksums, locks),
- the naive approach: open every file with astropy into xarray, concatenate, ``to_zarr``.

Every conversion runs in a fresh subprocess that reports its own wall time (including a final
``sync``, so page-cache writeback is counted for all three alike) and its peak RSS
(``ru_maxrss``) and CPU time. ``--runs N`` repeats cp and astropipe alternately and reports
the range of the ratio. Goals (issues 4, 9): astropipe >= 0.6x the ``cp`` rate at >= 2 GB,
and peak RSS flat in the input size. The work directory is deleted afterwards.

Usage: ``python benchmarks/bench_zarr.py`` (0.5 GB and 2 GB inputs), ``--quick``, ``--runs 3``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from astropipe.zarrcube.simulate import noise_series

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "data" / "sample" / "ovro_lwa" / "20240524_070001_MFS_test_image.fits"
FREQS_MHZ = (41, 46, 50, 55, 59, 64, 69, 73, 78, 82, 87, 92)

_OURS = """
import json, os, resource, sys, time
import yaml
from astropipe.zarrcube.stage import run
with open("params.yaml", encoding="utf-8") as fh:  # the configured zarr defaults
    zarr_section = dict(yaml.safe_load(fh)["zarr"])
zarr_section["collections"] = {"bench": {"kind": "lwa", "input_dir": sys.argv[1],
    "glob": "*-I-image.fits", "output": sys.argv[2], "metrics": sys.argv[2] + ".json"}}
if sys.argv[3] != "default":
    zarr_section["compressor"] = {**zarr_section["compressor"], "name": sys.argv[3]}
t0, c0 = time.perf_counter(), os.times()
run({"zarr": zarr_section}, collection="bench")
os.sync()
c1 = os.times()
cpu = c1.user + c1.system - c0.user - c0.system
print(json.dumps({"seconds": time.perf_counter() - t0, "cpu": cpu,
                  "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

# The naive approach of the OVRO-LWA portal reference: read everything, concat, write.
_NAIVE = """
import json, os, resource, sys, time
from pathlib import Path
import numpy as np, xarray as xr, zarr
from astropy.io import fits
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
t0 = time.perf_counter()
steps = {}
for p in sorted(src.glob("*-I-image.fits")):
    with fits.open(p) as h:
        hdr = h[0].header
        da = xr.DataArray(np.asarray(h[0].data[0, 0], dtype=np.float32).T, dims=("l", "m"))
        da = da.expand_dims(frequency=[float(hdr["CRVAL3"])], polarization=["I"])
    steps.setdefault(p.name[:15], []).append(da)
per_time = [xr.concat(v, dim="frequency").sortby("frequency") for _, v in sorted(steps.items())]
cube = xr.concat(per_time, dim="time").transpose("time", "frequency", "polarization", "l", "m")
ds = xr.Dataset({"SKY": cube}).assign_coords(time=np.arange(len(per_time), dtype=float))
n = ds.sizes
comp = None if sys.argv[3] == "none" else [zarr.codecs.BloscCodec(cname="zstd", clevel=1,
    shuffle="shuffle", typesize=4)]  # the default compressor of conf/zarr
enc = {"SKY": {"chunks": (1, n["frequency"], 1, 512, 512), "compressors": comp}}
ds.to_zarr(dst, mode="w", encoding=enc, consolidated=True)
os.sync()
print(json.dumps({"seconds": time.perf_counter() - t0,
                  "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def generate(out: Path, *, n_times: int, size: int, seed: int = 0) -> int:
    """Write ``n_times`` x 12 zenith-phased subband images of ``size``^2 float32; return bytes."""
    total = noise_series(
        out, n_times=n_times, size=size, freqs_mhz=FREQS_MHZ, template=TEMPLATE, seed=seed
    )
    os.sync()
    return total


def _child(code: str, *args: str) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cp(src: Path, dst: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
    os.sync()
    return time.perf_counter() - t0


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; returns 0."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="64 MB and 256 MB inputs (512x512 px)")
    p.add_argument(
        "--compressor", default="default", choices=("default", "none"), help="default: conf/zarr"
    )
    p.add_argument("--runs", type=int, default=1, help="cp / astropipe pairs per input size")
    p.add_argument("--no-naive", action="store_true", help="skip the naive xarray approach")
    p.add_argument("--keep", action="store_true", help="keep the work directory (printed)")
    a = p.parse_args(argv)
    size = 512 if a.quick else 1024
    per_step = len(FREQS_MHZ) * size * size * 4
    targets = (64e6, 256e6) if a.quick else (0.5e9, 2.0e9)
    work = Path(tempfile.mkdtemp(prefix="astropipe-bench-zarr-"))
    rows = []
    try:
        for target in targets:
            n_times = max(1, round(target / per_step))
            src = work / f"in_{n_times}"
            nbytes = generate(src, n_times=n_times, size=size)
            mb = nbytes / 1e6
            pairs = []
            for _ in range(max(1, a.runs)):  # alternate, so load changes hit both alike
                t_cp = _cp(src, work / f"cp_{n_times}")
                shutil.rmtree(work / f"cp_{n_times}")
                ours = _child(_OURS, str(src), str(work / f"ours_{n_times}.zarr"), a.compressor)
                out_mb = _du(work / f"ours_{n_times}.zarr") / 1e6
                shutil.rmtree(work / f"ours_{n_times}.zarr")
                pairs.append((t_cp, ours))
            naive = None
            if not a.no_naive:
                naive = _child(_NAIVE, str(src), str(work / f"naive_{n_times}.zarr"), a.compressor)
                shutil.rmtree(work / f"naive_{n_times}.zarr")
            shutil.rmtree(src)
            rows.append((mb, n_times, pairs, naive, out_mb))
    finally:
        if a.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"fits_to_zarr benchmark: {len(FREQS_MHZ)} subbands x {size}x{size} float32 per time "
        f"step (zenith-phased), compressor={a.compressor} (conf/zarr), {max(1, a.runs)} run(s)"
    )
    head = (
        f"{'input MB':>9} {'steps':>5} {'cp MB/s':>11} {'ours MB/s':>11} {'ours/cp':>11} "
        f"{'CPU s':>9} {'RSS ours MB':>11} {'naive MB/s':>10} {'RSS naive MB':>12} {'store MB':>8}"
    )
    print(head)

    def span(values: list[float], fmt: str) -> str:
        lo, hi = min(values), max(values)
        return format(lo, fmt) if lo == hi else f"{lo:{fmt}}-{hi:{fmt}}"

    for mb, n, pairs, naive, out_mb in rows:
        cp_rates = [mb / t for t, _ in pairs]
        our_rates = [mb / o["seconds"] for _, o in pairs]
        ratios = [o / c for o, c in zip(our_rates, cp_rates, strict=True)]
        nv_rate = mb / naive["seconds"] if naive else float("nan")
        nv_rss = naive["maxrss"] / 1e6 if naive else float("nan")
        print(
            f"{mb:9.0f} {n:5d} {span(cp_rates, '.0f'):>11} {span(our_rates, '.0f'):>11} "
            f"{span(ratios, '.2f'):>11} {span([o['cpu'] for _, o in pairs], '.1f'):>9} "
            f"{span([o['maxrss'] / 1e6 for _, o in pairs], '.0f'):>11} {nv_rate:10.0f} "
            f"{nv_rss:12.0f} {out_mb:8.0f}"
        )
    if len(rows) == 2:
        growth = max(o["maxrss"] for _, o in rows[1][2]) / max(o["maxrss"] for _, o in rows[0][2])
        print(
            f"peak RSS ours, large/small input: {growth:.2f}x "
            f"for {rows[1][0] / rows[0][0]:.1f}x the data"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
