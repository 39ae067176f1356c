"""ingest_ztf on bad input: hostile names never become paths, one odd packet is quarantined
and the run goes on, oversized tar members are not read, runs that would lose data refuse."""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import subprocess
import sys
import tarfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import fastavro
import pyarrow.parquet as pq
import pytest

from astropipe.cli import main
from astropipe.compute import ComputeConfig
from astropipe.errors import InputFileError
from astropipe.io.lock import lock_path
from astropipe.ztf import packets as packets_module
from astropipe.ztf.alerts import decode_packet
from astropipe.ztf.checks import check_alert
from astropipe.ztf.ingest import ingest_packets
from astropipe.ztf.packets import Packet, ReadStats, iter_packets

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "data" / "sample" / "ztf" / "alerts"
V4 = ALERTS / "2475433850015010009_v4.01.avro"  # ZTF17aadcvhq, candid 2475433850015010009
V4B = ALERTS / "3005140370015010009_v4.02.avro"  # ZTF18acullba


def _compute(n: int) -> ComputeConfig:
    """Synchronous for one worker, else a pool of ``n`` processes."""
    if n == 1:
        return ComputeConfig(scheduler="synchronous")
    return ComputeConfig(scheduler="processes", workers=n)


def _read(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    with open(path, "rb") as fh:
        reader = fastavro.reader(fh)
        return copy.deepcopy(reader.writer_schema), next(iter(reader))


def _pack(schema: Any, record: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), [record], codec="null")
    return buf.getvalue()


def _with(path: Path = V4, **changes: Any) -> bytes:
    """A real packet with record fields replaced (same schema)."""
    schema, rec = _read(path)
    rec.update(changes)
    return _pack(schema, rec)


def _string_candid(value: str) -> bytes:
    """A real packet whose schema makes ``candid`` a string, set to ``value``."""
    schema, rec = _read(V4)
    for f in schema["fields"]:
        if f["name"] == "candid":
            f["type"] = "string"
    rec["candid"] = value
    return _pack(schema, rec)


def _no_object_id() -> bytes:
    """A v4 packet whose schema lets ``objectId`` be null, and null (no alertId either)."""
    schema, rec = _read(V4)
    for f in schema["fields"]:
        if f["name"] == "objectId":
            f["type"] = ["null", "string"]
    rec["objectId"] = None
    return _pack(schema, rec)


def _candidate_as(kind: str) -> bytes:
    """A packet whose ``candidate`` is a string, or a record without ``jd``."""
    schema, rec = _read(V4)
    for f in schema["fields"]:
        if f["name"] == "candidate":
            if kind == "string":
                f["type"] = "string"
                rec["candidate"] = "not a record"
            else:
                f["type"]["fields"] = [x for x in f["type"]["fields"] if x["name"] != "jd"]
                del rec["candidate"]["jd"]
    return _pack(schema, rec)


def _primitive() -> bytes:
    return _pack("long", 42)


def _cli(*args: str) -> tuple[int, str, str]:
    return main(["ingest-ztf", *args]), "", ""


def _overrides(tmp: Path, alerts: Path) -> list[str]:
    return [
        f"ztf.alerts.path={alerts}",
        "ztf.dr.path=null",
        f"ztf.outputs.dir={tmp / 'out'}",
        f"ztf.outputs.alerts={tmp / 'out' / 'alerts.parquet'}",
        f"ztf.outputs.lightcurves={tmp / 'out' / 'lightcurves.parquet'}",
        f"ztf.outputs.cutouts={tmp / 'out' / 'cutouts'}",
        f"ztf.outputs.report={tmp / 'reports' / 'ingest_ztf.json'}",
        f"ztf.outputs.metrics={tmp / 'reports' / 'metrics.json'}",
        "compute.scheduler=synchronous",
    ]


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


# ----------------------------------------------------------------- names never become paths
@pytest.mark.parametrize(
    "object_id",
    ["/tmp/x", "../../x", "ZTF18abmmoot/../../x", "ZTF18abmmoot\x00", "..", "", "ZTF18ABMMOOT"],
)
def test_hostile_object_id_is_refused(object_id: str) -> None:
    alert = decode_packet(Packet("p.avro", _with(objectId=object_id)))
    with pytest.raises(InputFileError, match=r"^p\.avro: objectId .* is not a ZTF name"):
        check_alert(alert)


def test_every_real_object_id_passes() -> None:
    for path in ALERTS.glob("*_v*.avro"):
        if "schemaless" not in path.name:
            check_alert(decode_packet(Packet(path.name, path.read_bytes())))


def test_no_packet_content_writes_outside_outputs(tmp_path: Path, in_root: Path) -> None:
    escape = tmp_path / "escaped"  # an absolute path a hostile packet names
    src = tmp_path / "sample"
    src.mkdir()
    hostile = {
        "abs.avro": _with(objectId=str(escape / "x")),
        "dotdot.avro": _with(objectId="../../../escaped"),
        "sep.avro": _with(objectId="ZTF18abmmoot/../../escaped"),
        "nul.avro": _with(objectId="ZTF18abmmoo\x00"),
        "candid.avro": _string_candid("../../../escaped"),
        "noid.avro": _no_object_id(),
    }
    for name, data in hostile.items():
        (src / name).write_bytes(data)
    (src / "good.avro").write_bytes(V4.read_bytes())
    with tarfile.open(src / "ztf_public_20240101.tar", "w") as tar:  # hostile member names
        for name in ("../../../escaped.avro", str(escape / "abs.avro"), "ok/..\n/x.avro"):
            info = tarfile.TarInfo(name)
            data = V4B.read_bytes()
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link.avro")
        link.type, link.linkname = tarfile.SYMTYPE, str(escape)
        tar.addfile(link)
    before = _files(tmp_path)
    assert main(["ingest-ztf", *_overrides(tmp_path, src)]) == 0
    created = _files(tmp_path) - before
    outputs = (tmp_path / "out", tmp_path / "reports")
    assert created and all(any(p == o or o in p.parents for o in outputs) for p in created), sorted(
        created
    )
    assert not escape.exists() and not (tmp_path.parent / "escaped").exists()
    report = json.loads((tmp_path / "reports" / "ingest_ztf.json").read_text())
    quarantined = {q["file"].rsplit("/", 1)[-1]: q["reason"] for q in report["quarantined"]}
    assert set(quarantined) == set(hostile)
    assert "is not a ZTF name" in quarantined["abs.avro"]
    assert "candid '../../../escaped' is not an integer" in quarantined["candid.avro"]
    assert report["skipped_members"] == [
        {"file": f"{src / 'ztf_public_20240101.tar'}!link.avro", "kind": "symlink"}
    ]
    assert report["alerts"] == 2  # good.avro and the three tar copies of one alert
    stamps = sorted(
        p.relative_to(tmp_path / "out" / "cutouts").as_posix()
        for p in created
        if p.suffix == ".fits"
    )
    assert stamps == sorted(
        f"{o}/{c}_{k}.fits"
        for o, c in (("ZTF17aadcvhq", 2475433850015010009), ("ZTF18acullba", 3005140370015010009))
        for k in ("science", "template", "difference")
    )
    # a label from data stays on one line: the member name's newline is escaped
    (dup,) = report["duplicate_candids"]
    assert f"{src / 'ztf_public_20240101.tar'}!ok/..\\n/x.avro" in dup["dropped"]


# ------------------------------------------------------------- one odd packet, the run goes on
def test_odd_packets_are_quarantined_and_the_run_goes_on(
    tmp_path: Path, in_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "sample"
    src.mkdir()
    odd = {
        "candidate_string.avro": (
            _candidate_as("string"),
            "'candidate' is a str, expected a record",
        ),
        "primitive.avro": (_primitive(), "writer schema is 'long', not a record"),
        "no_jd.avro": (
            _candidate_as("no jd"),
            "candidate.jd is None, expected a finite Julian date",
        ),
        "nan_jd.avro": (
            _with(candidate={**_read(V4)[1]["candidate"], "jd": float("nan")}),
            "candidate.jd is nan",
        ),
        "locked.avro": (V4B.read_bytes(), "cannot read (Permission denied)"),
    }
    for name, (data, _) in odd.items():
        (src / name).write_bytes(data)
    (src / "good.avro").write_bytes(V4.read_bytes())
    real_open = open

    def refusing_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        # chmod 000 does not stop root, so the OS's refusal is simulated
        if str(path).endswith("locked.avro"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(packets_module, "open", refusing_open, raising=False)
    assert main(["ingest-ztf", *_overrides(tmp_path, src)]) == 0
    report = json.loads((tmp_path / "reports" / "ingest_ztf.json").read_text())
    reasons = {q["file"].rsplit("/", 1)[-1]: q["reason"] for q in report["quarantined"]}
    assert set(reasons) == set(odd)
    for name, (_, expected) in odd.items():
        assert expected in reasons[name], (name, reasons[name])
        assert "\n" not in reasons[name]
    assert report["packets"] == 6 and report["alerts"] == 1
    assert pq.read_table(tmp_path / "out" / "alerts.parquet")["objectId"].to_pylist() == [
        "ZTF17aadcvhq"
    ]


def test_on_error_fail_stops_at_the_odd_packet(tmp_path: Path, in_root: Path, capsys) -> None:
    src = tmp_path / "sample"
    src.mkdir()
    (src / "a.avro").write_bytes(V4.read_bytes())
    (src / "b.avro").write_bytes(_with(objectId="../x"))
    assert main(["ingest-ztf", *_overrides(tmp_path, src), "ztf.on_error=fail"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {src / 'b.avro'}: objectId '../x' is not a ZTF name")
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------------------- duplicate candid
def _two_versions() -> tuple[bytes, bytes]:
    """The same candid twice: the real packet and a copy with other photometry and stamps."""
    schema, rec = _read(V4)
    other = copy.deepcopy(rec)
    other["candidate"]["magpsf"] = 12.5
    for key in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
        other[key] = _read(V4B)[1][key]
    return _pack(schema, rec), _pack(schema, other)


@pytest.mark.parametrize("workers", [1, 2])
def test_same_candid_twice_one_rule_same_row_everywhere(
    tmp_path: Path, workers: int, caplog
) -> None:
    a, b = _two_versions()
    pa_, pb = Packet("a.avro", a), Packet("b.avro", b)
    winner, loser = (pa_, pb) if pa_.sha256 < pb.sha256 else (pb, pa_)
    win_mag = decode_packet(winner).record["candidate"]["magpsf"]
    win_stamp = decode_packet(winner).record["cutoutScience"]["stampData"]
    results = []
    for order in ([pa_, pb], [pb, pa_]):
        out = tmp_path / f"{workers}_{order[0].name}"
        with caplog.at_level(logging.WARNING):
            ing = ingest_packets(
                order, keep_jpeg=False, cutout_dir=out, fail=False, compute=_compute(workers)
            )
        (row,) = ing.collector.alerts_table().to_pylist()
        lc = ing.collector.lightcurve_columns()
        cand_rows = [
            m
            for m, u, j in zip(lc["mag"], lc["is_upper_limit"], lc["mjd"], strict=True)
            if abs(j - row["mjd"]) < 1e-9
        ]
        stamp = (out / "ZTF17aadcvhq" / "2475433850015010009_science.fits").read_bytes()
        results.append(
            (row["magpsf"], row["packet"], cand_rows, stamp, sorted(p.name for p in out.rglob("*")))
        )
        assert ing.collector.duplicates() == [
            {
                "candid": 2475433850015010009,
                "kept": winner.name,
                "dropped": [loser.name],
                "same_content": False,
            }
        ]
    assert results[0] == results[1]  # whatever the input order
    mag, packet, cand_rows, stamp, names = results[0]
    assert packet == winner.name and mag == pytest.approx(win_mag)
    assert cand_rows == [pytest.approx(win_mag)]  # the light curve agrees with the alert row
    import gzip

    assert stamp == gzip.decompress(win_stamp)
    assert not [n for n in names if n.endswith(".dup")]
    assert "with different content: kept" in caplog.text


# ------------------------------------------------------------------------------- tarballs
def test_oversized_member_is_quarantined_unread(tmp_path: Path) -> None:
    tar_path = tmp_path / "ztf_public_20240102.tar.gz"
    big = 48 * 1024 * 1024
    with tarfile.open(tar_path, "w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("huge.avro")
        info.size = big
        tar.addfile(info, io.BytesIO(bytes(big)))
        info = tarfile.TarInfo("good.avro")
        info.size = V4.stat().st_size
        tar.addfile(info, io.BytesIO(V4.read_bytes()))
    tracemalloc.start()
    try:
        got = list(iter_packets(tar_path, max_bytes=1024 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [p.name.rsplit("!", 1)[1] for p in got] == ["huge.avro", "good.avro"]
    assert got[0].data == b"" and got[0].problem.startswith(
        f"{big} bytes, larger than ztf.alerts.max_member_bytes=1048576"
    )
    assert got[1].problem is None and got[1].data == V4.read_bytes()
    assert peak < 8 * 1024 * 1024, peak  # the 48 MiB member was skipped, never held
    ing = ingest_packets(got, keep_jpeg=False, cutout_dir=None, fail=False)
    assert [q["file"] for q in ing.quarantined] == [got[0].name]
    assert ing.packets == 2 and len(ing.collector.alert_rows) == 1


def test_oversized_file_is_quarantined_unread(tmp_path: Path) -> None:
    (tmp_path / "big.avro").write_bytes(bytes(2048))
    (p,) = iter_packets(tmp_path, max_bytes=1024)
    assert p.data == b"" and p.problem.startswith("2048 bytes, larger than")


def test_link_and_device_members_are_skipped_logged_counted(tmp_path: Path, caplog) -> None:
    tar_path = tmp_path / "ztf_public_20240103.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name, kind in [
            ("sym.avro", tarfile.SYMTYPE),
            ("hard.avro", tarfile.LNKTYPE),
            ("dev.avro", tarfile.CHRTYPE),
            ("fifo.avro", tarfile.FIFOTYPE),
        ]:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            tar.addfile(info)
        info = tarfile.TarInfo("good.avro")
        info.size = V4.stat().st_size
        tar.addfile(info, io.BytesIO(V4.read_bytes()))
    stats = ReadStats()
    with caplog.at_level(logging.WARNING):
        got = list(iter_packets(tar_path, stats=stats))
    assert [p.name.rsplit("!", 1)[1] for p in got] == ["good.avro"]
    assert stats.counts() == {"character device": 1, "fifo": 1, "hard link": 1, "symlink": 1}
    assert "sym.avro: a symlink, not a packet" in caplog.text


# --------------------------------------------------------------------- refusals, lock, temps
@pytest.mark.parametrize("limit", ["-1", "0"])
def test_nonpositive_limit_is_refused(tmp_path: Path, in_root: Path, capsys, limit: str) -> None:
    (tmp_path / "out" / "cutouts").mkdir(parents=True)
    (tmp_path / "out" / "cutouts" / "keep.fits").write_bytes(b"previous")
    assert main(["ingest-ztf", *_overrides(tmp_path, ALERTS), "--limit", limit]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: --limit {limit}: expected a positive number of packets/rows, "
        "or no --limit to read everything; nothing was read or written."
    ]
    assert (tmp_path / "out" / "cutouts" / "keep.fits").read_bytes() == b"previous"


def test_no_decodable_packet_keeps_previous_outputs(tmp_path: Path, in_root: Path, capsys) -> None:
    src = tmp_path / "sample"
    src.mkdir()
    for i in range(3):
        (src / f"bad{i}.avro").write_bytes(b"Obj\x01garbage")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "alerts.parquet").write_bytes(b"previous")
    assert main(["ingest-ztf", *_overrides(tmp_path, src)]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line.startswith(f"error: {src}: 0 of 3 packets decodable (first: {src / 'bad0.avro'}: ")
    assert (tmp_path / "out" / "alerts.parquet").read_bytes() == b"previous"
    assert not (tmp_path / "reports").exists()


def test_stale_temp_dirs_are_removed_and_nothing_else(tmp_path: Path, in_root: Path) -> None:
    stale = [tmp_path / ".out.k3j_x9q2.tmp", tmp_path / ".out.old"]
    for d in stale:
        (d / "cutouts").mkdir(parents=True)
    (tmp_path / "reports").mkdir()
    stale_file = tmp_path / "reports" / ".ingest_ztf.json.abcd1234.tmp"
    stale_file.write_text("{")
    keep = [
        tmp_path / ".out.short.tmp",  # not tempfile's 8 characters
        tmp_path / ".out.k3j_x9q2.tmp.user",
        tmp_path / "out.k3j_x9q2.tmp",  # not hidden: not ours
        tmp_path / ".other.k3j_x9q2.tmp",
    ]
    for d in keep:
        d.mkdir()
    (tmp_path / ".out.zzzzzzzz.tmp").symlink_to(tmp_path / "sample_target")
    (tmp_path / "sample_target").mkdir()
    assert main(["ingest-ztf", *_overrides(tmp_path, V4)]) == 0
    assert not any(d.exists() for d in stale) and not stale_file.exists()
    assert all(d.is_dir() for d in keep)
    assert (tmp_path / ".out.zzzzzzzz.tmp").is_symlink() and (tmp_path / "sample_target").is_dir()
    assert not lock_path(tmp_path / "out").exists()  # released and removed


def test_second_run_is_refused_by_the_lock(tmp_path: Path, in_root: Path, capsys) -> None:
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from astropipe.io.lock import OutputLock\n"
            f"with OutputLock({str(out)!r}, writer='ingest_ztf'):\n"
            "    print('held', flush=True)\n"
            "    sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["ingest-ztf", *_overrides(tmp_path, V4)]) == 1
        (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
        assert line == (
            f"error: {lock_path(out)}: another ingest_ztf run holds this lock (pid {holder.pid}); "
            "wait for it to finish — the lock is released when that process exits."
        )
        assert not out.exists()
    finally:
        holder.communicate("", timeout=30)
    assert main(["ingest-ztf", *_overrides(tmp_path, V4)]) == 0  # free again
    assert os.path.exists(out / "alerts.parquet")
    time.sleep(0)
