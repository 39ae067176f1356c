"""Alerts per second and peak memory: ingest_ztf against a bare ``fastavro.reader`` loop.

The night is built by re-serialising the real sample packets (every decodable schema version)
with fresh ``candid``s into one uncompressed tarball, so every alert is distinct (nothing is
deduplicated away). Both sides stream that tarball member by member; the bare loop only
decodes, ingest_ztf decodes, checks, builds the alerts and light-curve tables and writes them
as Parquet (and, in the cutout rows, writes every stamp as FITS). Each row runs in a fresh
subprocess, so its peak RSS (``ru_maxrss``) is its own; imports and composing the params
are done before the clock starts (the reference has neither).

    python -m benchmarks ztf --alerts 20000          # the table (best of 3, ratio range)
    python -m benchmarks ztf --rss 10000 100000      # peak RSS of ingest_ztf at two sizes
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import fastavro

from astropipe.config import compose, find_root

#: Fresh candids start here (far above the sample's, so none collides).
CANDID_BASE = 3_000_000_000_000_000_000


def _letters(i: int) -> str:
    out = ""
    for _ in range(7):
        i, r = divmod(i, 26)
        out = chr(ord("a") + r) + out
    return out


def build_night(n_alerts: int, root: Path, work: Path) -> Path:
    """Write an uncompressed night tarball of ``n_alerts`` re-serialised real packets."""
    sources = []
    for p in sorted((root / "data/sample/ztf/alerts").glob("*.avro")):
        if "schemaless" in p.name:
            continue
        reader = fastavro.reader(io.BytesIO(p.read_bytes()))
        schema = fastavro.parse_schema(reader.writer_schema)
        sources.append((p.name, schema, next(reader)))
    night = work / "ztf_public_20231012.tar"
    with tarfile.open(night, "w") as tar:
        for i in range(n_alerts):
            name, schema, record = sources[i % len(sources)]
            candid = CANDID_BASE + i
            rec = dict(record, candidate=dict(record["candidate"], candid=candid))
            if "candid" in rec:
                rec["candid"] = candid
            if rec.get("objectId"):  # a new object, named in sequence as ZTF does in a year
                rec["objectId"] = rec["objectId"][:5] + _letters(i)
            buf = io.BytesIO()
            fastavro.writer(buf, schema, [rec], codec="null")
            data = buf.getvalue()
            info = tarfile.TarInfo(f"{candid}_{name}")
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


def ours_params(
    night: Path, work: Path, *, cutouts: bool, scheduler: str, workers: int
) -> dict[str, object]:
    """The params of one ingest_ztf run on ``night`` (no DR light curves)."""
    out = work / "out"
    return compose(
        [
            f"compute.scheduler={scheduler}",
            f"compute.workers={workers}",
            f"ztf.alerts.path={night}",
            "ztf.dr.path=null",
            "ztf.on_error=fail",
            f"ztf.alerts.cutouts={str(cutouts).lower()}",
            f"ztf.outputs.dir={out}",
            f"ztf.outputs.alerts={out}/alerts.parquet",
            f"ztf.outputs.lightcurves={out}/lightcurves.parquet",
            f"ztf.outputs.cutouts={out}/cutouts",
            f"ztf.outputs.report={work}/report.json",
            f"ztf.outputs.metrics={work}/metrics.json",
        ],
        root=find_root(),
    )


def ours(night: Path, work: Path, *, cutouts: bool, scheduler: str, workers: int) -> None:
    """One ingest_ztf run on ``night`` (no DR light curves)."""
    from astropipe.ztf.stage import run

    run(ours_params(night, work, cutouts=cutouts, scheduler=scheduler, workers=workers))


VARIANTS = {
    "ref": ("fastavro.reader loop (reference, 1 process)", None),
    "tables_sync": ("ingest_ztf, tables only, synchronous (1 process)", (False, "synchronous", 1)),
    "tables_threads": ("ingest_ztf, tables only, threads x2", (False, "threads", 2)),
    "tables_procs": ("ingest_ztf, tables only, processes x2", (False, "processes", 2)),
    "cutouts_sync": ("ingest_ztf, + FITS cutouts, synchronous", (True, "synchronous", 1)),
    "cutouts_procs": ("ingest_ztf, + FITS cutouts, processes x2", (True, "processes", 2)),
}


def _child(variant: str, night: Path, work: Path) -> None:
    from astropipe.ztf.stage import run  # imports and composing params are not measured

    spec = VARIANTS[variant][1]
    params = None
    if spec is not None:
        cutouts, scheduler, workers = spec
        params = ours_params(night, work, cutouts=cutouts, scheduler=scheduler, workers=workers)
    t0 = time.perf_counter()
    if params is None:
        bare_fastavro(night)
    else:
        run(params)
    sec = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": sec, "rss_mb": rss / 1024, "workers_rss_mb": kids / 1024}))


def measure(variant: str, night: Path, work: Path) -> dict[str, float]:
    """Run one variant in a fresh interpreter; its seconds and peak RSS (MB)."""
    shutil.rmtree(work / "out", ignore_errors=True)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_ztf", "--child", variant, str(night), str(work)],
        check=True,
        capture_output=True,
        text=True,
        cwd=find_root(),
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_ztf")
    ap.add_argument("--quick", action="store_true", help="2,000 alerts instead of 20,000")
    ap.add_argument("--alerts", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3, help="best of N (default 3)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    ap.add_argument("--rss", type=int, nargs="+", default=None, help="peak RSS at these sizes")
    ap.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    args, _ = ap.parse_known_args(argv)
    if args.child:
        _child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return 0
    root = find_root()
    scratch = Path(__file__).parent / "_work"
    scratch.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ztf.", dir=scratch))
    try:
        if args.rss:
            head = ("alerts", "MB on disk", "seconds", "alerts/s", "peak RSS MB")
            print("{:>8s} {:>10s} {:>8s} {:>9s} {:>12s}".format(*head))
            for n in args.rss:
                night = build_night(n, root, work)
                r = measure("tables_sync", night, work)
                size = night.stat().st_size / 1e6
                rate = n / r["seconds"]
                print(f"{n:8d} {size:10.0f} {r['seconds']:8.1f} {rate:9.0f} {r['rss_mb']:12.0f}")
                night.unlink()
            return 0
        n = args.alerts or (2_000 if args.quick else 20_000)
        night = build_night(n, root, work)
        size = night.stat().st_size / 1e6
        print(f"{n} alerts in {night.name} ({size:.0f} MB), best of {args.repeat}")
        variants = args.variants.split(",")
        # rounds interleave the variants, so a change of load on a shared machine hits all
        # of them; the ratio range is over rounds (each round against its own reference run)
        runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
        for _ in range(args.repeat):
            for v in variants:
                runs[v].append(measure(v, night, work))
        ref = [r["seconds"] for r in runs.get("ref", [])]
        head = ("", "seconds", "alerts/s", "ratio", "range", "RSS MB", "+workers")
        print("{:50s} {:>8s} {:>9s} {:>6s} {:>11s} {:>7s} {:>9s}".format(*head))
        for v in variants:
            sec = min(r["seconds"] for r in runs[v])
            rss = max(r["rss_mb"] for r in runs[v])
            kids = max(r["workers_rss_mb"] for r in runs[v])
            ratio, spread = "     -", "          -"
            if ref:
                ratio = f"{min(ref) / sec:6.2f}"
                each = [t / r["seconds"] for t, r in zip(ref, runs[v], strict=True)]
                spread = f"{min(each):5.2f}-{max(each):5.2f}"
            print(
                f"{VARIANTS[v][0]:50s} {sec:8.2f} {n / sec:9.0f} {ratio} {spread} "
                f"{rss:7.0f} {kids:9.0f}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
