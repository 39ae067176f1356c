"""Fuzz the parsers with mutated copies of the real sample files.

A seeded mutation loop (bit flips, truncations, byte insertions, overwritten runs) over the
real ZTF alert packets (``data/sample/ztf/alerts``) and the real and simulated FITS files
(``data/sample/ccd``, ``data/sample/ovro_lwa``). Every case must end in a decoded result, a
quarantine, or an :class:`~astropipe.errors.AstropipeError` — never another exception, never a
hang (pytest-timeout), never a memory blow-up (peak RSS growth bounded).

``make test`` runs a few hundred cases; ``ASTROPIPE_FUZZ_CASES=20000 make fuzz`` runs more
(``ASTROPIPE_FUZZ_SEED`` picks another seed). A failure prints the seed and case number, which
reproduce it exactly.
"""

from __future__ import annotations

import io
import os
import random
import re
import resource
from collections import Counter
from pathlib import Path

import fastavro
import pytest

from astropipe.errors import AstropipeError, InputFileError
from astropipe.lightcurve import to_lightcurve_table
from astropipe.ztf.alerts import decode_packet
from astropipe.ztf.collector import AlertCollector
from astropipe.ztf.ingest import AlertIngest, process_batch
from astropipe.ztf.packets import Packet
from astropipe.ztf.stage import _alert_lightcurves

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
PACKETS = sorted((SAMPLE / "ztf" / "alerts").glob("*.avro"))
FITS_FILES = sorted(
    p for d in ("ccd", "ovro_lwa") for p in (SAMPLE / d).rglob("*.fits") if p.is_file()
)

CASES = int(os.environ.get("ASTROPIPE_FUZZ_CASES", "300"))
SEED = int(os.environ.get("ASTROPIPE_FUZZ_SEED", "20240601"))
# seconds per case on a slow shared machine, plus start-up; a hang exceeds it by far
TIMEOUT = 30 + CASES // 20
# peak resident memory may grow by this much over the whole loop (a real packet is 100 kB)
MAX_RSS_GROWTH = 512 * 1024 * 1024


def mutate(data: bytes, rng: random.Random, *, hot: int | None = None) -> bytes:
    """1-4 random edits; with ``hot``, most edits land in the first ``hot`` bytes (headers)."""
    buf = bytearray(data)

    def pos() -> int:
        top = min(hot, len(buf)) if hot and rng.random() < 0.7 else len(buf)
        return rng.randrange(max(top, 1))

    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if op < 0.45:  # bit flip
            if buf:
                buf[pos() % len(buf)] ^= 1 << rng.randrange(8)
        elif op < 0.6:  # truncation
            del buf[pos() :]
        elif op < 0.8:  # insertion
            i = pos()
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op < 0.9:  # an overwritten run of a "big number" byte (length prefixes, NAXIS)
            i = pos()
            buf[i : i + 4] = rng.choice([b"\xff\xff\xff\x7f", b"\xfe\xff\xff\xff", b"99999"])
        else:  # a byte deleted (shifts every later field)
            if buf:
                del buf[pos() % len(buf)]
    return bytes(buf)


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB


def _avro_header_size(data: bytes) -> int:
    with io.BytesIO(data) as fh:
        fastavro.reader(fh)
        return fh.tell()


# ------------------------------------------------------------------------------ ZTF packets
@pytest.mark.timeout(TIMEOUT)
def test_fuzz_alert_packets(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    originals = [(p.name, p.read_bytes()) for p in PACKETS]
    headers = {n: _avro_header_size(d) for n, d in originals if d.startswith(b"Obj\x01")}
    total = AlertIngest(AlertCollector())
    outcomes: Counter[str] = Counter()
    rss0 = _rss()
    for case in range(CASES):
        name, data = rng.choice(originals)
        bad = mutate(data, rng, hot=headers.get(name))
        where = f"seed {SEED} case {case} ({name})"
        try:
            got = process_batch(
                [Packet(f"case{case}.avro", bad)],
                keep_jpeg=True,
                cutout_dir=tmp_path / str(case),
                fail=False,
            )
        except Exception as exc:  # the contract under test: nothing escapes process_batch
            pytest.fail(f"{where}: {type(exc).__name__}: {exc}")
        assert len(got.quarantined) + len(got.collector.alert_rows) == 1, where
        for q in got.quarantined:
            assert q["reason"].startswith(f"case{case}.avro: ") and "\n" not in q["reason"], where
        outcomes["quarantined" if got.quarantined else "decoded"] += 1
        total.merge(got)
    # everything that decoded must also tabulate: no type clash between packets at the end
    total.collector.alerts_table()
    to_lightcurve_table(_alert_lightcurves(total.collector))
    assert _rss() - rss0 < MAX_RSS_GROWTH
    # the loop exercised both paths, so it tests something
    assert outcomes["quarantined"] > CASES // 4 and outcomes["decoded"] > 0, outcomes


def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _container(schema: object, block: bytes, count: int) -> bytes:
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), [], codec="null")
    head = buf.getvalue()
    return head + _zigzag(count) + _zigzag(len(block)) + block + head[-16:]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("case", "schema", "block", "count", "reason"),
    [
        (  # found by the fuzz loop: a flipped "fields" left prv_candidates items empty
            "empty_items",
            {
                "type": "record",
                "name": "alert",
                "fields": [
                    {"name": "candidate", "type": "long"},
                    {
                        "name": "prv",
                        "type": {
                            "type": "array",
                            "items": {"type": "record", "name": "e", "fields": []},
                        },
                    },
                ],
            },
            _zigzag(1) + _zigzag(2**62),
            1,
            "array of zero-byte items",
        ),
        ("null_records", "null", b"", 2**62, "writer schema is 'null', not a record"),
        (
            "huge_bytes",
            {
                "type": "record",
                "name": "alert",
                "fields": [{"name": "candidate", "type": "bytes"}],
            },
            _zigzag(2**40) + b"abcd",
            1,
            "Avro decoding failed (EOFError",
        ),
        (
            "huge_record_count",
            {
                "type": "record",
                "name": "alert",
                "fields": [{"name": "candidate", "type": "long"}],
            },
            _zigzag(7) * 10,
            2**40,
            "expected one ZTF alert record with a 'candidate', found 2 record(s)",
        ),
    ],
)
def test_corrupt_counts_and_lengths_end_fast(case, schema, block, count, reason) -> None:
    rss0 = _rss()
    with pytest.raises(InputFileError, match=f"^{case}: .*{re.escape(reason)}"):
        decode_packet(Packet(case, _container(schema, block, count)))
    assert _rss() - rss0 < 64 * 1024 * 1024


# ------------------------------------------------------------------------------- FITS files
def _fits_readers():
    """The project's public FITS entry points (fits_to_zarr's and calibrate_images')."""
    from astropipe.calibration import frames

    try:  # the merged reader (astropipe.io.fits); fall back to the zarrcube one
        from astropipe.io.fits import read_primary
    except ImportError:  # pragma: no cover - depends on the merge state
        from astropipe.zarrcube.fitsfile import read_primary

    def zarr_read(path: Path) -> None:
        read_primary(path)

    def calib_read(path: Path) -> None:
        info = frames.read_info(path)
        if info is not None:
            frames.read_rows(info, 0, min(4, info.shape[0]))

    return {"fits_to_zarr": zarr_read, "calibrate_images": calib_read}


def _fits_header_size(data: bytes) -> int:
    end = data.find(b"END" + b" " * 77)
    return (end // 2880 + 1) * 2880 if end >= 0 else 2880


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("reader", ["fits_to_zarr", "calibrate_images"])
def test_fuzz_fits_files(tmp_path: Path, reader: str) -> None:
    read = _fits_readers()[reader]
    rng = random.Random(SEED + (1 if reader == "calibrate_images" else 0))
    originals = [(p.name, p.read_bytes()) for p in FITS_FILES]
    outcomes: Counter[str] = Counter()
    rss0 = _rss()
    path = tmp_path / "case.fits"
    for case in range(max(CASES // 3, 50)):
        name, data = rng.choice(originals)
        path.write_bytes(mutate(data, rng, hot=_fits_header_size(data)))
        try:
            read(path)
            outcomes["read"] += 1
        except AstropipeError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc), (case, name, str(exc))
            outcomes["refused"] += 1
        except Exception as exc:  # the contract under test
            pytest.fail(f"{reader}: seed {SEED} case {case} ({name}): {type(exc).__name__}: {exc}")
    assert _rss() - rss0 < MAX_RSS_GROWTH
    assert outcomes["refused"] > 0 and outcomes["read"] > 0, outcomes
