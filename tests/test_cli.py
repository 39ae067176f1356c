"""The astropipe command: overrides, dry runs that write nothing, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from astropipe.cli import main

SEED_EXAMPLE = [
    "ingest-ztf",
    "ztf.source=irsa",
    "ztf.irsa.ra=210.8023",
    "ztf.irsa.dec=54.3489",
    "ztf.irsa.radius=0.05",
    "ztf.irsa.filters=[zg,zr]",
    "ztf.irsa.mjd_range=[59800,59820]",
    "--limit",
    "20",
    "--dry-run",
]


def _snapshot(root: Path) -> set[tuple[str, int]]:
    return {
        (str(p.relative_to(root)), p.stat().st_mtime_ns)
        for d in ("data", "reports")
        if (root / d).exists()
        for p in (root / d).rglob("*")
    }


def test_seed_example_dry_run_prints_plan_and_writes_nothing(in_root: Path, capsys) -> None:
    before = _snapshot(in_root)
    assert main(SEED_EXAMPLE) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dry_run"] is True and summary["source"] == "irsa"
    assert summary["limit"] == 20
    assert summary["packets"] == 20  # --limit bounds the local packets read too
    (request,) = summary["irsa_requests"]
    assert "CIRCLE 210.8023 54.3489 0.05" in json.dumps(request)
    assert _snapshot(in_root) == before


def test_sample_dry_run_counts_and_quarantines(in_root: Path, capsys) -> None:
    assert main(["ingest-ztf", "--dry-run"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["packets"] == 39 and summary["alerts_decoded"] == 38
    assert [q["file"].rsplit("/", 1)[1] for q in summary["quarantined"]] == [
        "87704463155000_v0_schemaless_datum.avro"
    ]


def test_on_error_fail_is_one_line(in_root: Path, capsys) -> None:
    assert main(["ingest-ztf", "ztf.on_error=fail", "--dry-run"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(
        "error: data/sample/ztf/alerts/87704463155000_v0_schemaless_datum.avro"
    )


def test_unbounded_live_query_is_refused(in_root: Path, capsys) -> None:
    assert main(["ingest-ztf", "ztf.source=irsa", "--dry-run"]) == 1
    assert "the query is unbounded" in capsys.readouterr().err


def test_typo_in_override(in_root: Path, capsys) -> None:
    assert main(["show-config", "ztf.sorce=irsa"]) == 1
    assert "ztf.sorce" in capsys.readouterr().err


def test_show_config(in_root: Path, capsys) -> None:
    assert main(["show-config", "features.min_points=7"]) == 0
    assert json.loads(capsys.readouterr().out)["features"]["min_points"] == 7


def test_help_lists_every_stage(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    commands = (
        "ingest-ztf",
        "ingest-tess",
        "ingest-catalogs",
        "ingest",
        "build-features",
        "calibrate-images",
        "fits-to-zarr",
        "validate",
        "show-config",
    )
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("    ")]
    assert set(commands) <= set(listed), listed


# --- --progress / --no-progress ------------------------------------------------------------


def _recorder(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    calls: list[dict] = []

    def run(params, *, dry_run=False, collection="", progress=False):  # the stage's signature
        calls.append({"dry_run": dry_run, "collection": collection, "progress": progress})
        return {"ok": True}

    monkeypatch.setattr("astropipe.cli._runner", lambda command: run)
    return calls


@pytest.mark.parametrize(("flag", "expected"), [("--progress", True), ("--no-progress", False)])
def test_progress_flag_is_passed_to_the_stage(
    in_root: Path, monkeypatch: pytest.MonkeyPatch, capsys, flag: str, expected: bool
) -> None:
    calls = _recorder(monkeypatch)
    assert main(["fits-to-zarr", "--collection", "lwa", flag]) == 0
    assert calls == [{"dry_run": False, "collection": "lwa", "progress": expected}]
    assert json.loads(capsys.readouterr().out) == {"ok": True}


def test_progress_auto_is_off_when_stderr_is_not_a_terminal(
    in_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _recorder(monkeypatch)  # pytest captures stderr: not a TTY
    assert main(["fits-to-zarr", "--collection", "lwa", "--dry-run"]) == 0
    assert calls[0]["progress"] is False


def test_progress_bars_stay_out_of_stdout(in_root: Path, tmp_path: Path, capsys) -> None:
    # A store of its own: the workspace's store may already hold every step after `make repro`.
    store = f"zarr.collections.lwa.output={tmp_path / 'lwa.zarr'}"
    assert main(["fits-to-zarr", "--collection", "lwa", "--dry-run", "--progress", store]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)  # stdout is the JSON summary alone
    assert summary["time_steps"] == 4 and summary["written"] == 4
    assert "headers" in err  # the bar went to stderr
