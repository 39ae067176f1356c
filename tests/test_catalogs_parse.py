"""Exoplanet Archive CSV reader on the real KOI and TOI snapshots in data/sample/catalogs.

Expected values are read off the CSV text itself (and checked against the archive's own
documentation: TOI 216.01 = TIC 55652896, Kepler-90 = KIC 11442793 with seven KOIs).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from astropipe.catalogs.archive_csv import natural_key, parse_archive_csv, parse_column_notes
from astropipe.catalogs.schemas import K2, KOI, TOI
from astropipe.errors import InputFileError

SAMPLE = Path(__file__).resolve().parents[1] / "data/sample/catalogs"


@pytest.fixture(scope="module")
def koi_bytes() -> bytes:
    return (SAMPLE / "koi_cumulative.csv").read_bytes()


@pytest.fixture(scope="module")
def toi_bytes() -> bytes:
    return (SAMPLE / "toi.csv").read_bytes()


@pytest.fixture(scope="module")
def koi(koi_bytes):
    return parse_archive_csv(koi_bytes, KOI, where="koi_cumulative.csv")


@pytest.fixture(scope="module")
def toi(toi_bytes):
    return parse_archive_csv(toi_bytes, TOI, where="toi.csv")


def _body(data: bytes) -> tuple[list[str], list[str]]:
    """The comment lines and the CSV lines (header first) of an archive file."""
    lines = data.decode().splitlines()
    comments = [ln for ln in lines if ln.startswith("#")]
    return comments, [ln for ln in lines if not ln.startswith("#")]


def test_koi_rows_types_and_sort(koi) -> None:
    t = koi.table
    assert t.num_rows == 9564 == koi.rows_read
    assert koi.quarantined == [] and koi.duplicates_dropped == 0 and koi.undeclared_columns == []
    assert t.schema.field("kepid").type == pa.int64()
    assert t.schema.field("kepoi_name").type == pa.string()
    assert t.schema.field("koi_fpflag_nt").type == pa.int32()
    assert t.schema.field("koi_period").type == pa.float64()
    names = t["kepoi_name"].to_pylist()
    assert names[:3] == ["K00001.01", "K00002.01", "K00003.01"]
    assert names == sorted(names, key=natural_key)


def test_kepler90_is_kic_11442793_with_seven_kois(koi) -> None:
    rows = [r for r in koi.table.to_pylist() if r["kepid"] == 11442793]
    assert sorted(r["kepoi_name"] for r in rows) == [f"K00351.0{i}" for i in range(1, 8)]
    h = next(r for r in rows if r["kepoi_name"] == "K00351.01")
    # the CSV row: ...,Kepler-90 h,CONFIRMED,CANDIDATE,0.0000,...,331.597273200,...
    assert h["kepler_name"] == "Kepler-90 h"
    assert h["koi_disposition"] == "CONFIRMED"
    assert h["koi_period"] == 331.5972732
    assert h["koi_prad"] == 10.89
    assert h["ra"] == 284.4335 and h["dec"] == 49.305161
    assert h["koi_teq_err1"] is None  # an empty field is null, not 0 or NaN


def test_toi_ids_keep_both_digits_and_natural_order(toi) -> None:
    t = toi.table
    assert t.num_rows == 7703
    assert t.schema.field("toi").type == pa.string()
    assert t.schema.field("tid").type == pa.int64()
    ids = t["toi"].to_pylist()
    assert all(len(i.split(".")[1]) == 2 for i in ids)  # 1234.10 is never 1234.1
    assert ids.index("216.01") < ids.index("1000.01")  # natural, not string, order
    assert ids == sorted(ids, key=natural_key)


def test_toi216_is_tic_55652896_with_sexagesimal_kept(toi) -> None:
    rows = {r["toi"]: r for r in toi.table.to_pylist() if r["tid"] == 55652896}
    assert sorted(rows) == ["216.01", "216.02"]
    r = rows["216.01"]
    assert r["tfopwg_disp"] == "CP"
    assert r["rastr"] == "04h55m55.2s" and r["decstr"] == "-63d15m37.19s"
    assert r["ra"] == 73.980013 and r["dec"] == -63.26033
    assert r["pl_orbper"] == 34.5059318
    assert r["pl_orbperlim"] == 0
    assert r["pl_insolerr1"] is None


def test_units_and_descriptions_come_from_the_comment_block(koi, toi, toi_bytes) -> None:
    comments, _ = _body(toi_bytes)
    notes = parse_column_notes(comments)
    assert notes["pl_orbper"] == ("Planet Orbital Period Value", "days")
    assert toi.notes == notes
    f = toi.table.schema.field("pl_orbper")
    assert f.metadata[b"description"] == b"Planet Orbital Period Value"
    assert f.metadata[b"archive_unit"] == b"days"
    assert f.metadata[b"unit"] == b"d"
    f = koi.table.schema.field("koi_time0bk")
    assert f.metadata[b"archive_unit"] == b"BKJD" and f.metadata[b"unit"] == b"d"
    assert koi.table.schema.field("koi_prad").metadata[b"unit"] == b"R_earth"


def test_tap_csv_without_comment_block_gives_the_same_table(toi, toi_bytes) -> None:
    _, lines = _body(toi_bytes)
    tap = parse_archive_csv("\n".join(lines) + "\n", TOI, where="tap")
    assert tap.notes == {}
    assert tap.table.equals(toi.table)  # values; metadata comes from the declared schema
    f = tap.table.schema.field("pl_orbper")
    assert f.metadata[b"description"] == b"Planet Orbital Period Value"


def test_rows_in_any_order_give_identical_tables(koi, koi_bytes) -> None:
    comments, lines = _body(koi_bytes)
    shuffled = [lines[0], *reversed(lines[1:])]
    again = parse_archive_csv("\n".join(comments + shuffled) + "\n", KOI, where="x")
    assert again.table.equals(koi.table, check_metadata=True)


def _toi_text(toi_bytes: bytes, n: int = 5) -> tuple[str, list[str]]:
    _, lines = _body(toi_bytes)
    return lines[0], lines[1 : 1 + n]


def test_bad_value_quarantines_its_row_only(toi_bytes) -> None:
    header, rows = _toi_text(toi_bytes)
    fields = rows[1].split(",")
    fields[19] = "12.x"  # pl_orbper
    rows[1] = ",".join(fields)
    parsed = parse_archive_csv("\n".join([header, *rows]) + "\n", TOI, where="f.csv")
    assert parsed.table.num_rows == 4
    assert parsed.quarantined == [
        {"row": 2, "id": fields[0], "reason": "pl_orbper='12.x' is not a number"}
    ]
    with pytest.raises(InputFileError, match=r"f.csv: data row 2 .*pl_orbper='12.x'"):
        parse_archive_csv("\n".join([header, *rows]) + "\n", TOI, where="f.csv", fail=True)


def test_nan_text_and_bad_integer_are_refused(toi_bytes) -> None:
    header, rows = _toi_text(toi_bytes)
    f0, f1 = rows[0].split(","), rows[1].split(",")
    f0[4] = "nan"  # ra
    f1[1] = "5.5e7"  # tid
    rows[0], rows[1] = ",".join(f0), ",".join(f1)
    parsed = parse_archive_csv("\n".join([header, *rows]) + "\n", TOI, where="f")
    reasons = sorted(q["reason"] for q in parsed.quarantined)
    assert reasons == ["ra='nan' is not a finite number", "tid='5.5e7' is not an integer"]
    assert parsed.table.num_rows == 3


def test_ragged_row_is_quarantined_with_its_line(toi_bytes) -> None:
    header, rows = _toi_text(toi_bytes)
    rows[2] = ",".join(rows[2].split(",")[:10])
    text = "# banner\n#\n" + "\n".join([header, *rows]) + "\n"
    parsed = parse_archive_csv(text, TOI, where="f")
    assert parsed.table.num_rows == 4
    (q,) = parsed.quarantined
    assert q["line"] == 6  # 2 comment lines, the header, then the third data row
    assert q["reason"].startswith("expected 65 fields, found 10")


def test_truncated_answer_is_refused(toi_bytes) -> None:
    header, rows = _toi_text(toi_bytes)
    text = "\n".join([header, *rows])
    cut = text[: len(text) - 17]  # mid-line, as a download cut short
    with pytest.raises(InputFileError, match=r"tap: ends mid-line .*truncated; re-download it"):
        parse_archive_csv(cut, TOI, where="tap")


def test_missing_declared_column_and_undeclared_columns(toi_bytes) -> None:
    header, rows = _toi_text(toi_bytes)
    drop = header.split(",").index("pl_rade")
    cut = [",".join(v for i, v in enumerate(r.split(",")) if i != drop) for r in [header, *rows]]
    with pytest.raises(InputFileError, match=r"lacks declared column\(s\) \['pl_rade'\]"):
        parse_archive_csv("\n".join(cut) + "\n", TOI, where="f")
    extra = [header + ",sy_pnum"] + [r + ",3" for r in rows]
    parsed = parse_archive_csv("\n".join(extra) + "\n", TOI, where="f")
    assert parsed.undeclared_columns == ["sy_pnum"]
    assert parsed.table.column_names == TOI.names


def test_duplicates_exact_kept_once_conflicting_quarantined(toi_bytes) -> None:
    header, rows = _toi_text(toi_bytes)
    conflicting = rows[1].split(",")
    conflicting[19] = "99.0"
    text = "\n".join([header, *rows, rows[0], ",".join(conflicting)]) + "\n"
    parsed = parse_archive_csv(text, TOI, where="f")
    assert parsed.duplicates_dropped == 1
    assert [q["id"] for q in parsed.quarantined] == [conflicting[0]]
    assert parsed.table.num_rows == 4  # 5 rows: one conflicting id left out entirely
    assert conflicting[0] not in parsed.table["toi"].to_pylist()


def test_empty_and_header_only_and_not_utf8() -> None:
    with pytest.raises(InputFileError, match="no header line"):
        parse_archive_csv("# only a banner\n", TOI, where="f")
    with pytest.raises(InputFileError, match=r"no usable toi rows \(0 read"):
        parse_archive_csv(",".join(TOI.read_names) + "\n", TOI, where="f")
    with pytest.raises(InputFileError, match="not UTF-8"):
        parse_archive_csv(b"toi,tid\n\xff\xfe\n", TOI, where="f")


def test_k2_epic_is_derived_from_epic_hostname() -> None:
    # No K2 sample exists; this row is written from the k2pandc column documentation.
    header = ",".join(K2.read_names)
    row = {n: "" for n in K2.read_names}
    row |= {"pl_name": "K2-3 b", "hostname": "K2-3", "epic_hostname": "EPIC 201367065",
            "disposition": "CONFIRMED", "default_flag": "1", "pl_orbper": "10.05", "ra": "172.56",
            "dec": "-1.45"}  # fmt: skip
    bad = dict(row, pl_name="K2-3 c", epic_hostname="201367065x")
    text = "\n".join([header, ",".join(row.values()), ",".join(bad.values())]) + "\n"
    parsed = parse_archive_csv(text, K2, where="k2")
    assert parsed.table["epic"].to_pylist() == [201367065]
    assert parsed.quarantined[0]["reason"].startswith("epic_hostname='201367065x' is not")


def test_natural_key() -> None:
    assert sorted(["1000.01", "216.02", "216.10", "216.1", "K2-18 b"], key=natural_key) == [
        "216.1", "216.02", "216.10", "1000.01", "K2-18 b"
    ]  # fmt: skip
