"""Alerts per second: ingest_ztf against a bare ``fastavro.reader`` loop over the same packets.

The real sample packets (every decodable schema version) are replicated into one night tarball
of at least 20,000 alerts. Both sides stream that tarball member by member; the bare loop only
decodes, ingest_ztf decodes, builds the alerts and light-curve tables, writes them as Parquet
and (in the second row) writes every cutout stamp as FITS.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

import fastavro

from astropipe.config import compose, find_root
from astropipe.ztf.stage import run


def build_night(n_alerts: int, root: Path, work: Path) -> Path:
    """Write an uncompressed night tarball with ``n_alerts`` replicated real packets."""
    packets = sorted(
        p for p in (root / "data/sample/ztf/alerts").glob("*.avro") if "schemaless" not in p.name
    )
    night = work / "ztf_public_20231012.tar"
    with tarfile.open(night, "w") as tar:
        for i in range(n_alerts):
            src = packets[i % len(packets)]
            data = src.read_bytes()
            info = tarfile.TarInfo(f"{i:06d}_{src.name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return night


def bare_fastavro(night: Path) -> int:
    """The reference: stream the tarball and decode every packet with fastavro, nothing else."""
    n = 0
    with tarfile.open(night, "r|*") as tar:
        for member in tar:
            fh = tar.extractfile(member)
            if fh is None:
                continue
            for _ in fastavro.reader(io.BytesIO(fh.read())):
                n += 1
    return n


def timed(fn, *args: object, repeat: int = 3) -> float:
    """Best of ``repeat`` wall-clock timings of ``fn(*args)``, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_ztf")
    ap.add_argument("--quick", action="store_true", help="2,000 alerts instead of 20,000")
    ap.add_argument("--alerts", type=int, default=None)
    args, _ = ap.parse_known_args(argv)
    n = args.alerts or (2_000 if args.quick else 20_000)
    root = find_root()
    scratch = Path(__file__).parent / "_work"
    scratch.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ztf.", dir=scratch))
    night = build_night(n, root, work)
    out = work / "out"

    def ours(cutouts: bool, workers: int) -> None:
        params = compose(
            [
                f"compute.workers={workers}",
                f"ztf.alerts.path={night}",
                "ztf.dr.path=null",
                f"ztf.alerts.cutouts={str(cutouts).lower()}",
                f"ztf.outputs.dir={out}",
                f"ztf.outputs.alerts={out}/alerts.parquet",
                f"ztf.outputs.lightcurves={out}/lightcurves.parquet",
                f"ztf.outputs.cutouts={out}/cutouts",
                f"ztf.outputs.report={work}/report.json",
                f"ztf.outputs.metrics={work}/metrics.json",
            ],
            root=root,
        )
        run(params)

    decoded = bare_fastavro(night)
    t_ref = timed(bare_fastavro, night)
    rows = [("fastavro.reader loop (reference)", t_ref)]
    for workers in (1, 2):
        rows.append((f"ingest_ztf, tables only, {workers} proc", timed(ours, False, workers)))
        rows.append((f"ingest_ztf, + FITS cutouts, {workers} proc", timed(ours, True, workers)))
    print(f"{decoded} alerts in {night.name} ({night.stat().st_size / 1e6:.0f} MB)")
    print("(the reference decodes in one process; ingest_ztf rows say how many it used)")
    print(f"{'':38s} {'seconds':>8s} {'alerts/s':>10s} {'ratio vs ref':>13s}")
    for name, sec in rows:
        print(f"{name:38s} {sec:8.2f} {decoded / sec:10.0f} {t_ref / sec:13.2f}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
