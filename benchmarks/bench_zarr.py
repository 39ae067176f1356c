"""Benchmark fits_to_zarr: MB/s against ``cp -r`` and the naive xarray approach; peak RSS.

Generates a series of OVRO-LWA-like subband images (12 subbands x 1024x1024 float32 per time
step, header from the real sample) under ``benchmarks/_work/`` and converts it three ways:

- ``cp -r`` of the input directory (the I/O limit),
- astropipe's writer (one time step at a time, appends, checksums, locks),
- the naive approach: open every file with astropy into xarray, concatenate, ``to_zarr``.

Every conversion runs in a fresh subprocess that reports its own wall time (including a final
``sync``, so page-cache writeback is counted for all three alike) and its peak RSS
(``ru_maxrss``). Goals (issue 4): astropipe >= 0.6x the ``cp`` rate, and peak RSS flat in the
input size. The work directory is deleted afterwards.

Usage: ``python benchmarks/bench_zarr.py`` (0.5 GB and 2 GB inputs) or ``--quick``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.time import Time, TimeDelta

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work"
TEMPLATE = ROOT / "data" / "sample" / "ovro_lwa" / "20240524_070001_MFS_test_image.fits"
FREQS_MHZ = (41, 46, 50, 55, 59, 64, 69, 73, 78, 82, 87, 92)

_OURS = """
import json, os, resource, sys, time
from astropipe.config import load_params
from astropipe.zarrcube.stage import run
params = load_params("params.yaml")  # the configured defaults: chunks, format, compressor
zarr_section = dict(params["zarr"])
zarr_section["collections"] = {"bench": {"kind": "lwa", "input_dir": sys.argv[1],
    "glob": "*-I-image.fits", "output": sys.argv[2], "metrics": sys.argv[2] + ".json"}}
if sys.argv[3] != "default":
    zarr_section["compressor"] = {**zarr_section["compressor"], "name": sys.argv[3]}
t0 = time.perf_counter()
run({"zarr": zarr_section}, collection="bench")
os.sync()
print(json.dumps({"seconds": time.perf_counter() - t0,
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
    """Write ``n_times`` x 12 subband images of ``size``^2 float32; return the bytes written."""
    out.mkdir(parents=True, exist_ok=True)
    header = fits.getheader(TEMPLATE)
    header.remove("HISTORY", ignore_missing=True, remove_all=True)
    header["NAXIS1"] = header["NAXIS2"] = size
    header["CRPIX1"] = header["CRPIX2"] = size / 2 + 1
    header["CDELT1"], header["CDELT2"] = -128.0 / size, 128.0 / size
    rng = np.random.default_rng(seed)
    t0 = Time(header["DATE-OBS"], scale="utc")
    total = 0
    for k in range(n_times):
        stamp = (t0 + TimeDelta(10.0 * k, format="sec")).strftime("%Y%m%d_%H%M%S")
        for f in FREQS_MHZ:
            h = header.copy()
            h["CRVAL3"] = f * 1e6
            h["DATE-OBS"] = (t0 + TimeDelta(10.0 * k, format="sec")).isot
            data = rng.standard_normal((1, 1, size, size), dtype=np.float32) * 8.0
            path = out / f"{stamp}_{f}MHz_averaged_bench-I-image.fits"
            fits.PrimaryHDU(data, header=h).writeto(path, overwrite=True)
            total += path.stat().st_size
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
    p.add_argument("--no-naive", action="store_true", help="skip the naive xarray approach")
    p.add_argument("--keep", action="store_true", help="keep benchmarks/_work")
    a = p.parse_args(argv)
    size = 512 if a.quick else 1024
    per_step = len(FREQS_MHZ) * size * size * 4
    targets = (64e6, 256e6) if a.quick else (0.5e9, 2.0e9)
    shutil.rmtree(WORK, ignore_errors=True)
    rows = []
    try:
        for target in targets:
            n_times = max(1, round(target / per_step))
            src = WORK / f"in_{n_times}"
            nbytes = generate(src, n_times=n_times, size=size)
            mb = nbytes / 1e6
            t_cp = _cp(src, WORK / f"cp_{n_times}")
            shutil.rmtree(WORK / f"cp_{n_times}")
            ours = _child(_OURS, str(src), str(WORK / f"ours_{n_times}.zarr"), a.compressor)
            out_mb = _du(WORK / f"ours_{n_times}.zarr") / 1e6
            shutil.rmtree(WORK / f"ours_{n_times}.zarr")
            naive = None
            if not a.no_naive:
                naive = _child(_NAIVE, str(src), str(WORK / f"naive_{n_times}.zarr"), a.compressor)
                shutil.rmtree(WORK / f"naive_{n_times}.zarr")
            shutil.rmtree(src)
            rows.append((mb, n_times, t_cp, ours, naive, out_mb))
    finally:
        if not a.keep:
            shutil.rmtree(WORK, ignore_errors=True)
    print(
        f"fits_to_zarr benchmark: {len(FREQS_MHZ)} subbands x {size}x{size} float32 per time "
        f"step, compressor={a.compressor} (conf/zarr), chunks 1 x all freq x 512x512"
    )
    head = (
        f"{'input MB':>9} {'steps':>5} {'cp MB/s':>8} {'ours MB/s':>9} {'ours/cp':>7} "
        f"{'naive MB/s':>10} {'naive/cp':>8} {'ours/naive':>10} {'RSS ours MB':>11} "
        f"{'RSS naive MB':>12} {'store MB':>8}"
    )
    print(head)
    for mb, n, t_cp, ours, naive, out_mb in rows:
        cp_rate, our_rate = mb / t_cp, mb / ours["seconds"]
        nv_rate = mb / naive["seconds"] if naive else float("nan")
        nv_rss = naive["maxrss"] / 1e6 if naive else float("nan")
        print(
            f"{mb:9.0f} {n:5d} {cp_rate:8.0f} {our_rate:9.0f} {our_rate / cp_rate:7.2f} "
            f"{nv_rate:10.0f} {nv_rate / cp_rate:8.2f} {our_rate / nv_rate:10.2f} "
            f"{ours['maxrss'] / 1e6:11.0f} {nv_rss:12.0f} {out_mb:8.0f}"
        )
    if len(rows) == 2:
        growth = rows[1][3]["maxrss"] / rows[0][3]["maxrss"]
        print(
            f"peak RSS ours, large/small input: {growth:.2f}x "
            f"for {rows[1][0] / rows[0][0]:.1f}x the data"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
