"""The ingest_tess stage on the real sample files: counts, quarantine, copies, determinism, lock.

Each test runs in its own directory holding a copy of data/sample/tess and data/sample/kepler,
so the paths the stage records are relative, as under DVC.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from astropipe.config import compose
from astropipe.errors import ConfigError, InputFileError, LockedError, MissingInputError
from astropipe.io.lock import OutputLock
from astropipe.io.tables import read_metadata
from astropipe.lightcurve import FLAG_QUALITY_MASKED
from astropipe.provenance import sha256_file
from astropipe.tess import DEFAULT_LAYOUTS, TESS_LIGHTCURVE_SCHEMA
from astropipe.tess.config import TessConfig
from astropipe.tess.stage import CADENCE_KEY, SEGMENT, read_known_quality_bits, run

ROOT = Path(__file__).resolve().parents[1]
BAD = [
    (
        "test-lc-tess-pimen-corrupted-at-header.fits",
        "the header of HDU 1 stops after 240 bytes without an END card",
    ),
    (
        "test-lc-tess-pimen-corrupted-at-header2.fits",
        "the header of HDU 0 stops after 600 bytes without an END card",
    ),
    (
        "test-lc-tess-pimen-corrupted.fits",
        "the LIGHTCURVE extension needs 10000 bytes of data from byte 20160, but the file ends "
        "at byte 22548",
    ),
]
ROWS_BY_MISSION = {"K2": 21942, "Kepler": 23536, "TESS": 38722}


@pytest.fixture(scope="module")
def base_params() -> dict[str, Any]:
    return compose(root=ROOT)


@pytest.fixture()
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with the sample light curves under data/sample."""
    for name in ("tess", "kepler"):
        shutil.copytree(ROOT / "data/sample" / name, tmp_path / "data/sample" / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _params(base: dict[str, Any], **tess: Any) -> dict[str, Any]:
    params = copy.deepcopy(base)
    params["tess"].update(tess)
    return params


def _outputs(root: Path) -> dict[str, bytes]:
    files = [*sorted((root / "data/raw/tess").rglob("*")), *sorted((root / "reports").rglob("*"))]
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files if p.is_file()}


def test_sample_counts_quarantine_and_copies(work: Path, base_params: dict[str, Any]) -> None:
    metrics = run(base_params)
    assert metrics["rows"] == 84200 and metrics["rows_by_mission"] == ROWS_BY_MISSION
    assert (metrics["files"], metrics["files_read"], metrics["files_quarantined"]) == (17, 14, 3)
    assert metrics["files_by_layout"] == {"eleanor": 1, "kepler": 10, "spoc": 3}
    assert metrics["nan_time_dropped"] == 815 * 2 + 142 + 96 + 6 * 6
    assert metrics["light_curves"] == 14 and metrics["objects"] == 12
    assert metrics["duplicate_cadences_dropped"] == 0

    report = json.loads(Path("reports/ingest_tess.json").read_text())
    got = [(Path(q["file"]).name, q["reason"]) for q in report["quarantined"]]
    assert [name for name, _ in got] == [name for name, _ in BAD]
    for (_, reason), (want_name, want) in zip(got, BAD, strict=True):
        assert reason.startswith(f"data/sample/tess/bad/{want_name}: ") and want in reason
        assert "\n" not in reason
    assert [q["sha256"] for q in report["quarantined"]] == [
        sha256_file(f"data/sample/tess/bad/{n}") for n, _ in BAD
    ]

    # every file read is kept byte for byte; quarantined ones are not copied
    kept = sorted(p for p in Path("data/raw/tess/fits").rglob("*") if p.is_file())
    assert len(kept) == 14 and not any("bad" in p.parts for p in kept)
    for rec in report["read"]:
        copy_ = Path("data/raw/tess/fits") / rec["kept_as"]
        assert copy_.read_bytes() == Path(rec["file"]).read_bytes()
        assert sha256_file(copy_) == rec["sha256"]

    table = pq.read_table("data/raw/tess/lightcurves.parquet")
    assert table.schema.remove_metadata() == TESS_LIGHTCURVE_SCHEMA
    df = table.to_pandas()
    assert df.groupby("mission").size().to_dict() == ROWS_BY_MISSION
    # time increases within every light curve, and each cadence is there once
    for _, seg in df.groupby(list(SEGMENT), dropna=False):
        assert (np.diff(seg["mjd"].to_numpy()) > 0).all()
    assert not df.duplicated(list(CADENCE_KEY)).any()
    assert int((df["flags"] & FLAG_QUALITY_MASKED != 0).sum()) == metrics["quality_flagged"]

    meta = read_metadata("data/raw/tess/lightcurves.parquet")
    prov = meta["provenance"]
    assert prov["stage"] == "ingest_tess" and prov["time_scale"] == "TDB"
    assert prov["inputs"] == {r["file"]: r["sha256"] for r in report["read"]}
    assert len(prov["inputs"]) == 14
    assert meta["units"]["flux"] == "electron / s" and meta["units"]["mjd"] == "d"
    assert read_known_quality_bits("data/raw/tess/lightcurves.parquet") == {
        "spoc": 65535,
        "kepler": (1 << 21) - 1 - 512,  # bit 9 has no meaning in the Kepler Archive Manual
        "eleanor": 65535 | (1 << 17) | (1 << 18),
    }


def test_second_run_is_byte_identical(work: Path, base_params: dict[str, Any]) -> None:
    run(base_params)
    first = _outputs(work)
    run(base_params)
    assert _outputs(work) == first
    assert "data/raw/tess/lightcurves.parquet" in first and len(first) == 17  # 14 + table + 2


def test_metrics_hold_no_machine_paths(work: Path, base_params: dict[str, Any]) -> None:
    run(base_params)
    for name in ("reports/metrics/ingest_tess.json", "reports/ingest_tess.json"):
        text = Path(name).read_text()
        assert str(work) not in text and str(ROOT) not in text


def test_output_lock_refuses_a_second_writer(work: Path, base_params: dict[str, Any]) -> None:
    run(base_params)
    before = _outputs(work)
    with OutputLock("data/raw/tess", writer="ingest_tess"):
        with pytest.raises(LockedError, match=r"data/raw/tess.lock: another ingest_tess run"):
            run(base_params)
    assert _outputs(work) == before


@pytest.mark.parametrize("limit", [0, -1, True])
def test_limit_below_one_is_refused(work: Path, base_params: dict[str, Any], limit: Any) -> None:
    with pytest.raises(ConfigError, match=f"--limit {limit}: expected a positive number"):
        run(base_params, limit=limit)
    assert not Path("data/raw").exists() and not Path("reports").exists()


def test_limit_reads_the_first_files(work: Path, base_params: dict[str, Any]) -> None:
    metrics = run(base_params, limit=2)
    assert metrics["files"] == 2 and metrics["rows_by_mission"] == {"Kepler": 490 + 14280}


def test_dry_run_writes_nothing(work: Path, base_params: dict[str, Any]) -> None:
    summary = run(base_params, dry_run=True)
    assert summary["dry_run"] is True and summary["rows"] == 84200
    assert [Path(q["file"]).name for q in summary["quarantined"]] == [n for n, _ in BAD]
    assert not Path("data/raw").exists() and not Path("reports").exists()


def test_on_error_fail_stops_at_the_first_bad_file(work: Path, base_params: dict[str, Any]) -> None:
    run(base_params)
    before = _outputs(work)
    with pytest.raises(InputFileError, match=f"corrupted-at-header.fits: .*{BAD[0][1]}"):
        run(_params(base_params, on_error="fail"))
    assert _outputs(work) == before  # the previous outputs stay


def test_no_readable_file_keeps_the_previous_outputs(
    work: Path, base_params: dict[str, Any]
) -> None:
    run(base_params)
    before = _outputs(work)
    params = _params(base_params, inputs={"bad": "data/sample/tess/bad"})
    with pytest.raises(InputFileError, match=r"0 of 3 light-curve files readable \(first: "):
        run(params)
    assert _outputs(work) == before


def test_missing_input_directory_names_the_key(work: Path, base_params: dict[str, Any]) -> None:
    params = _params(base_params, inputs={"tess": "data/sample/tess", "k2": "data/nowhere"})
    with pytest.raises(MissingInputError, match=r"tess.inputs.k2: data/nowhere is not a dir"):
        run(params)
    params = _params(base_params, pattern="**/*.fits.gz")
    with pytest.raises(InputFileError, match=r"no file matches tess.pattern='\*\*/\*.fits.gz'"):
        run(params)


def test_same_cadences_in_two_files_are_kept_once(work: Path, base_params: dict[str, Any]) -> None:
    extra = work / "more"
    extra.mkdir()
    shutil.copy(work / "data/sample/tess/test-lc-tess-pimen-100-cadences.fits", extra / "a.fits")
    params = _params(base_params, inputs={"more": "more", "tess": "data/sample/tess"})
    metrics = run(params)
    assert metrics["duplicate_cadences_dropped"] == 100
    assert metrics["rows_by_mission"] == {"TESS": ROWS_BY_MISSION["TESS"]}
    report = json.loads(Path("reports/ingest_tess.json").read_text())
    # same DATA_REL: the first file in order ("more" sorts before "tess") keeps the rows
    assert report["duplicates"] == [
        {
            "file": "data/sample/tess/test-lc-tess-pimen-100-cadences.fits",
            "rows_dropped": 100,
            "kept_from": ["more/a.fits"],
        }
    ]
    assert Path("data/raw/tess/fits/more/a.fits").is_file()


def test_sap_flux_is_read_by_choice(work: Path, base_params: dict[str, Any]) -> None:
    params = _params(base_params, read={**base_params["tess"]["read"], "flux_column": "sap"})
    run(params)
    df = pq.read_table("data/raw/tess/lightcurves.parquet", columns=["source", "flux_column"])
    pairs = set(map(tuple, df.to_pandas().drop_duplicates().to_numpy()))
    assert pairs == {("spoc", "SAP_FLUX"), ("kepler", "SAP_FLUX"), ("eleanor", "RAW_FLUX")}


def test_conf_layouts_are_the_built_in_maps() -> None:
    conf = yaml.safe_load((ROOT / "conf/tess/default.yaml").read_text())
    cfg = TessConfig.from_params({"tess": conf})
    assert cfg.read.reader().layouts == DEFAULT_LAYOUTS
    assert cfg == TessConfig()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tess.read.quality=strict", "tess.read.quality: 'strict' is not valid; expected a preset"),
        ("tess.read.quality=-1", "tess.read.quality: -1 is not valid"),
        ("tess.read.flux_column=kspsap", "tess.read.flux_column: 'kspsap' is not defined"),
        ("tess.read.layouts.eleanor.extension=0", "eleanor.extension: 0 is not valid"),
        ("tess.source=mast", "tess.source: 'mast' is not a valid option"),
        ("tess.on_error=skip", "tess.on_error: 'skip' is not a valid option"),
        ("tess.pattern=../*.fits", "tess.pattern: '../*.fits' must be a relative glob"),
        ("+tess.inputs.k2=data/k2", None),  # a new input directory is a conf key, not code
    ],
)
def test_bad_config_is_one_line(override: str, message: str | None) -> None:
    if message is None:
        assert compose([override], root=ROOT)["tess"]["inputs"]["k2"] == "data/k2"
        return
    with pytest.raises(ConfigError) as info:
        compose([override], root=ROOT)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["..", "a/b", "", "/abs"])
def test_input_names_never_become_paths_outside_fits(name: str) -> None:
    with pytest.raises(ConfigError, match=r"tess.inputs: names .* are not plain names"):
        TessConfig.from_params({"tess": {"inputs": {name: "data/sample/tess"}}})


def test_live_dry_run_plans_requests_without_network(
    work: Path, base_params: dict[str, Any]
) -> None:
    # live mode end to end on loopback: tests/test_mast_tess_live.py
    out = run(_params(base_params, source="live"), dry_run=True)
    assert out["requests"]["observations"]["service"] == "Mast.Caom.Filtered"
    assert not Path("data/raw").exists() and not Path("data/cache").exists()


def test_cli_ingest_tess(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from astropipe.cli import main

    shutil.copytree(ROOT / "conf", work / "conf")
    assert main(["ingest-tess", "--limit", "-1"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --limit -1: expected a positive number of files")
    assert main(["ingest-tess", "--dry-run", "--limit", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["files"] == 3 and out["dry_run"] is True
    assert not Path("data/raw").exists()


# --- the tess_lightcurves contract (validate) ----------------------------------------------


def _contract_report(path: str, gx_context: Any, **cfg: Any) -> Any:
    from astropipe.validation.config import RangesConfig, TessLightcurvesConfig
    from astropipe.validation.runner import validate_frame
    from astropipe.validation.tess import tess_lightcurves_contract, tess_lightcurves_table

    tcfg = TessLightcurvesConfig(path=path, build="dvc repro ingest_tess", **cfg)
    contract = tess_lightcurves_contract(tcfg, RangesConfig())
    return validate_frame(tess_lightcurves_table(tcfg), contract, path=path, context=gx_context)


def _rewrite(src: str, dst: str, edit: Any) -> str:
    """Write ``edit(table)`` to ``dst`` with the provenance and units of ``src``."""
    import pyarrow as pa

    from astropipe.io.tables import write_parquet

    meta = read_metadata(src)
    df = edit(pq.read_table(src).to_pandas())
    table = pa.Table.from_pandas(df, schema=TESS_LIGHTCURVE_SCHEMA, preserve_index=False)
    write_parquet(table, dst, provenance=meta["provenance"], units=meta["units"])
    return dst


@pytest.fixture()
def written(work: Path, base_params: dict[str, Any]) -> str:
    run(base_params)
    return "data/raw/tess/lightcurves.parquet"


def test_contract_passes_on_the_sample(written: str, gx_context: Any) -> None:
    report = _contract_report(written, gx_context)
    assert report.rows == 84200 and report.success, [o.rule for o in report.failed]
    assert len(report.outcomes) > 50


def _failed(report: Any) -> dict[str, dict[str, Any]]:
    return {o.rule: o.observed for o in report.failed}


def test_contract_names_the_broken_light_curve(written: str, gx_context: Any) -> None:
    pimen = "TIC 261136679 TESS S1 spoc 120s"

    def edit(df: Any) -> Any:
        rows = df.index[(df["object_id"] == "TIC 261136679") & (df["source"] == "spoc")]
        first, second = rows[0], rows[1]
        df.loc[[first, second], "mjd"] = df.loc[[second, first], "mjd"].to_numpy()  # out of order
        df.loc[rows[5], "quality"] = df.loc[rows[5], "quality"] | (1 << 20)  # not a TESS bit
        df.loc[rows[5], "flags"] = df.loc[rows[5], "flags"] | (1 << 20)
        k2 = df.index[df["object_id"] == "EPIC 211436265"]
        df.loc[k2[: len(k2) * 6 // 10], "flux"] = np.nan  # 60% of a light curve without flux
        # one cadence twice, the copy at the end (so also back in time in its light curve)
        return pd.concat([df, df.iloc[[0]]], ignore_index=True)

    import pandas as pd

    k2 = "EPIC 211436265 K2 C5 kepler 1765.46s"
    bad = _rewrite(written, "bad.parquet", edit)
    failed = _failed(_contract_report(bad, gx_context))
    order = next(v for k, v in failed.items() if k.startswith("time increases"))
    assert order["unexpected_count"] == 2 and order["unexpected_items"] == [pimen, k2]
    bits = next(v for k, v in failed.items() if k.startswith("QUALITY holds only"))
    assert bits["unexpected_items"] == [pimen]
    finite = next(v for k, v in failed.items() if k.startswith("flux finite on >= 50%"))
    assert set(finite["unexpected_items"]) == {k2}
    dup = next(v for k, v in failed.items() if k.startswith("(object_id, mission, sector"))
    assert dup["unexpected_count"] == 2
    assert len(failed) == 4, list(failed)


def test_contract_knows_eleanor_bits_only_on_eleanor_rows(written: str, gx_context: Any) -> None:
    def edit(df: Any) -> Any:
        for source in ("eleanor", "spoc"):
            i = df.index[df["source"] == source][0]
            df.loc[i, "quality"] = df.loc[i, "quality"] | (1 << 17)
            df.loc[i, "flags"] = df.loc[i, "flags"] | (1 << 17)
        return df

    failed = _failed(_contract_report(_rewrite(written, "b.parquet", edit), gx_context))
    (bits,) = [v for k, v in failed.items() if k.startswith("QUALITY holds only")]
    assert bits["unexpected_count"] == 1  # the spoc row; eleanor declares 2^17
    assert bits["unexpected_items"] == ["TIC 25155310 TESS S1 spoc 120s"]
    assert len(failed) == 1, list(failed)


def test_validate_stage_runs_the_contract(
    written: str, base_params: dict[str, Any], gx_context: Any
) -> None:
    from astropipe.validation.stage import run as validate

    params = copy.deepcopy(base_params)
    v = params["validation"]
    v["tables"] = {}
    v.pop("frames")
    v.pop("cubes")
    summary = validate(params, context=gx_context)
    assert summary["success"] is True
    assert summary["tables"]["tess_lightcurves"]["rows"] == 84200
    docs = Path(v["outputs"]["docs"])
    assert "tess_lightcurves" in (docs / "index.md").read_text()
    Path(written).unlink()
    with pytest.raises(MissingInputError, match=r"table 'tess_lightcurves' not found; build it "
                       r"with `dvc repro ingest_tess`"):  # fmt: skip
        validate(params, context=gx_context)
