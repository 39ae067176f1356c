"""``astropipe ingest --source …``: one consolidated JSON summary, overrides per source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from astropipe import ingest as ingest_mod
from astropipe.cli import main


def _snapshot(root: Path) -> set[tuple[str, int]]:
    return {
        (str(p.relative_to(root)), p.stat().st_mtime_ns)
        for d in ("data", "reports")
        if (root / d).exists()
        for p in (root / d).rglob("*")
    }


def test_all_dry_run_prints_one_summary_and_writes_nothing(in_root: Path, capsys) -> None:
    before = _snapshot(in_root)
    assert main(["ingest", "--source", "all", "--dry-run", "--limit", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)  # one JSON document on stdout
    assert summary["dry_run"] is True and summary["limit"] == 2
    assert summary["order"] == ["ztf", "tess", "mast", "catalogs"]  # catalogs link to tess
    assert {k: v["stage"] for k, v in summary["sources"].items()} == {
        "ztf": "ingest_ztf", "tess": "ingest_tess", "mast": "ingest_mast",
        "catalogs": "ingest_catalogs",
    }  # fmt: skip
    assert all(v["status"] == "ok" for v in summary["sources"].values()), summary
    cat = summary["sources"]["catalogs"]["summary"]
    assert cat["catalogs"]["toi"]["rows"] == 2 and cat["catalogs"]["k2"]["status"] == "unavailable"
    assert summary["sources"]["ztf"]["summary"]["packets"] == 2
    assert _snapshot(in_root) == before


def test_ztf_overrides_apply_to_ztf_only(in_root: Path, capsys) -> None:
    # ztf.on_error=fail makes ZTF stop at its one undecodable sample packet; the other
    # sources run as configured and the summary says which failed.
    code = main(["ingest", "--source", "all", "--dry-run", "ztf.on_error=fail"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 1
    assert summary["sources"]["ztf"]["status"] == "error"
    assert "87704463155000_v0_schemaless_datum.avro" in summary["sources"]["ztf"]["error"]
    assert {k: v["status"] for k, v in summary["sources"].items() if k != "ztf"} == {
        "tess": "ok", "mast": "ok", "catalogs": "ok",
    }  # fmt: skip


def test_override_of_an_unselected_source_is_refused(in_root: Path, capsys) -> None:
    assert main(["ingest", "--source", "catalogs", "--dry-run", "ztf.source=irsa"]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    (line,) = out.err.strip().splitlines()[-1:]
    assert line.startswith(
        "error: ztf.source=irsa: an override of `ztf`, which only --source ztf reads, but "
        "--source selects catalogs;"
    )


def test_catalogs_override_reaches_catalogs(in_root: Path, capsys) -> None:
    assert main(["ingest", "--source", "catalogs", "--dry-run", "catalogs.catalogs=[toi]"]) == 0
    cat = json.loads(capsys.readouterr().out)["sources"]["catalogs"]["summary"]
    assert list(cat["catalogs"]) == ["toi"]


def test_a_stage_missing_from_the_tree_is_reported_not_run(
    in_root: Path, capsys, monkeypatch
) -> None:
    fake = ingest_mod.Source("mast", "mast", "astropipe.no_such_pkg.stage", "ingest_mast")
    monkeypatch.setitem(ingest_mod.SOURCES, "mast", fake)
    assert main(["ingest", "--source", "mast", "--dry-run"]) == 1  # asked for by name
    entry = json.loads(capsys.readouterr().out)["sources"]["mast"]
    assert entry == {
        "stage": "ingest_mast",
        "status": "not available",
        "reason": "src/astropipe/no_such_pkg/stage.py does not exist in this tree: the "
        "ingest_mast stage is not built yet",
    }
    summary, ok = ingest_mod.ingest({}, [fake, fake], dry_run=True)
    assert ok is True  # within `all`, a missing stage is reported, not a failure


def test_per_stage_command_and_bad_limit(in_root: Path, capsys) -> None:
    assert main(["ingest-catalogs", "--dry-run", "--limit", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["catalogs"]["koi"]["rows"] == 1
    assert main(["ingest", "--source", "catalogs", "--dry-run", "--limit", "0"]) == 1
    entry = json.loads(capsys.readouterr().out)["sources"]["catalogs"]
    assert entry["status"] == "error" and entry["error"].startswith("--limit 0: expected")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("catalogs.catalogs=[koi,koi]", "catalogs.catalogs: ['koi', 'koi'] must name each of"),
        (
            "catalogs.freshness.toi=0",
            "catalogs.freshness.toi: 0 is not valid; expected a number > 0",
        ),
        ("catalogs.tap.url=ftp://x", "catalogs.tap.url: 'ftp://x' is not an http(s) URL"),
        ("catalogs.source=tap", "catalogs.source: 'tap' is not a valid option"),
        ("catalogs.tap.queries.toi='toi please'", "catalogs.tap.queries.toi: 'toi please' is not"),
        (
            "catalogs.catalogs=[k2]",
            "catalogs.catalogs=['k2']: none is available in sample mode (k2:",
        ),
    ],
)
def test_bad_catalogs_config_is_one_line(in_root: Path, capsys, override, message) -> None:
    assert main(["ingest-catalogs", "--dry-run", override]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {message}"), err[-1]


def test_unknown_source_is_refused_by_the_parser(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["ingest", "--source", "hst"])
    assert "invalid choice: 'hst'" in capsys.readouterr().err
