"""io.tables: the streamed Parquet writer gives bytes that depend on the rows only."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from astropipe.io.tables import ParquetRowGroups, file_metadata, read_metadata, write_parquet
from astropipe.lightcurve import LIGHTCURVE_SCHEMA, LIGHTCURVE_UNITS

N = 100_000


def _lightcurves(n: int) -> pa.Table:
    rng = np.random.default_rng(9)
    # distinct names: a row group's dictionary outgrows its 1 MB page and falls back to
    # plain pages at a point that moved with the chunk boundaries
    ids = [f"ZTF18a{i:014d}" for i in range(n)]
    cols = {
        "object_id": ids,
        "survey": ["ZTF"] * n,
        "source": np.where(rng.random(n) < 0.8, "alert", "dr").tolist(),
        "band": rng.choice(["g", "r", "i"], n).tolist(),
        "mjd": 58000 + np.cumsum(rng.random(n)),
        "mag": 18 + rng.standard_normal(n),
        "mag_err": rng.random(n) / 10,
        "flux": rng.random(n),
        "flux_err": rng.random(n),
        "limiting_mag": np.where(rng.random(n) < 0.1, np.nan, 20.5),
        "is_upper_limit": rng.random(n) < 0.1,
        "flags": rng.integers(0, 8, n),
        "ra": rng.random(n) * 360,
        "dec": rng.random(n) * 180 - 90,
    }
    return pa.Table.from_pydict(cols, schema=LIGHTCURVE_SCHEMA)


def _stream(path: Path, table: pa.Table, batch: int, rows: int) -> bytes:
    meta = file_metadata({"stage": "test"}, LIGHTCURVE_UNITS)
    with ParquetRowGroups(path, table.schema, meta, rows=rows) as out:
        for i in range(0, table.num_rows, batch):
            out.write(table.slice(i, batch))
    return path.read_bytes()


def test_row_groups_bytes_do_not_depend_on_the_batches(tmp_path: Path) -> None:
    """Regression: each row group was written as the batches' chunks, and Arrow's writer splits
    pages at chunk boundaries, so the file changed with ztf.alerts.batch_size."""
    table = _lightcurves(N)
    one = _stream(tmp_path / "one.parquet", table, N, 60_000)
    assert _stream(tmp_path / "many.parquet", table, 256, 60_000) == one
    assert _stream(tmp_path / "odd.parquet", table, 999, 60_000) == one
    assert pq.ParquetFile(tmp_path / "one.parquet").metadata.num_row_groups == 2
    got = pq.read_table(tmp_path / "many.parquet").to_pandas()
    pd.testing.assert_frame_equal(got, table.to_pandas())


def test_one_row_group_is_write_parquet_and_metadata_is_shared(tmp_path: Path) -> None:
    table = _lightcurves(5000)
    streamed = _stream(tmp_path / "s.parquet", table, 256, 1 << 17)
    write_parquet(
        table, tmp_path / "w.parquet", provenance={"stage": "test"}, units=LIGHTCURVE_UNITS
    )
    assert streamed == (tmp_path / "w.parquet").read_bytes()
    assert read_metadata(tmp_path / "s.parquet")["units"] == dict(sorted(LIGHTCURVE_UNITS.items()))


def test_empty_stream_equals_write_parquet_of_an_empty_table(tmp_path: Path) -> None:
    empty = LIGHTCURVE_SCHEMA.empty_table()
    streamed = _stream(tmp_path / "s.parquet", empty, 1, 10)
    write_parquet(
        empty, tmp_path / "w.parquet", provenance={"stage": "test"}, units=LIGHTCURVE_UNITS
    )
    assert streamed == (tmp_path / "w.parquet").read_bytes()


def test_a_failure_leaves_no_file_and_abort_removes_the_temporary(tmp_path: Path) -> None:
    table = _lightcurves(10)
    target = tmp_path / "t.parquet"
    with pytest.raises(RuntimeError, match="boom"):
        with ParquetRowGroups(target, table.schema, file_metadata(), rows=4) as out:
            out.write(table)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    out = ParquetRowGroups(target, table.schema, file_metadata(), rows=4)
    out.write(table)
    out.abort()
    assert list(tmp_path.iterdir()) == []


def test_packet_log_bytes_do_not_depend_on_the_batches(tmp_path: Path) -> None:
    from astropipe.ztf.packetlog import PacketLog, packets_digest

    pairs = [
        (f"ztf_public_20240101.tar.gz/{i:018d}.avro", hashlib.sha256(str(i).encode()).hexdigest())
        for i in range(N)
    ]
    files, digests = [], []
    for batch in (256, N):
        path = tmp_path / f"p{batch}.parquet"
        log = PacketLog(path, file_metadata({"stage": "test"}), name="packets.parquet")
        for i in range(0, N, batch):
            log.add(pairs[i : i + batch])
        digests.append(log.close())
        files.append(path.read_bytes())
    assert files[0] == files[1] and digests[0] == digests[1]
    assert packets_digest(tmp_path / "p256.parquet") == {
        k: digests[0][k] for k in ("count", "sha256")
    }
