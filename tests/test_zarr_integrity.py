"""fits_to_zarr never loses a store: no implicit deletion, verified chunks, repair from inputs.

Regressions pinned here: ``zarr.rebuild=no`` counted as true and wiped a store (4 → 2 time
steps); a layout change silently rebuilt; a flipped chunk passed both fits_to_zarr and validate
and ``dvc repro`` recorded the corrupted store.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from astropipe.errors import ConfigError, InputFileError, MissingInputError
from astropipe.provenance import sha256_file
from astropipe.zarrcube.manifest import IMAGE_VARS, read_manifest
from astropipe.zarrcube.stage import run
from astropipe.zarrcube.writer import WriteOptions
from zarr_helpers import chunk_files, flip_byte, make_lwa, params, tree_digest, truncate


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """Inputs (4 time steps x 3 subbands, 64x64 px), a store built from them, its digest."""
    inputs, out = tmp_path / "in", tmp_path / "lwa.zarr"
    make_lwa(inputs)
    run(params(inputs, out), collection="lwa")
    return inputs, out, tree_digest(out)


def _sky(out: Path) -> np.ndarray:
    with xr.open_zarr(out, consolidated=False, decode_times=False) as ds:
        return ds.SKY.values


# --- chunk checksums -----------------------------------------------------------------------


def test_checksums_cover_every_chunk_and_are_deterministic(built, tmp_path: Path) -> None:
    inputs, out, digest = built
    manifest = read_manifest(out)
    assert manifest is not None
    assert sorted(manifest.chunk_sha256) == chunk_files(out)  # every chunk object, nothing else
    assert (
        len(manifest.chunk_sha256) == 4 * 2 * 2 + 4 * 7 + 4
    )  # SKY, 7 per-step (beam x 3, time, flag, phase centre x 2), axes; no ra/dec (lwa)
    for key, sha in manifest.chunk_sha256.items():
        assert sha256_file(out / key) == sha
    doc = json.loads((out / "zarr.json").read_text())["attributes"]["astropipe"]["chunk_sha256"]
    assert list(doc) == sorted(doc)  # stable order in the stored JSON
    again = tmp_path / "again.zarr"
    run(params(inputs, again), collection="lwa")
    assert tree_digest(again) == digest  # checksums add no run-dependent bytes


@pytest.mark.parametrize("fmt", [3, 2])
def test_flipped_and_truncated_chunks_are_rewritten_from_inputs(tmp_path: Path, fmt: int) -> None:
    inputs, out = tmp_path / "in", tmp_path / "lwa.zarr"
    make_lwa(inputs)
    run(params(inputs, out, zarr_format=fmt), collection="lwa")
    ref, ref_sky = tree_digest(out), _sky(out)
    sep = "c/" if fmt == 3 else ""
    dot = "/" if fmt == 3 else "."
    flipped = out / f"SKY/{sep}{dot.join(['1', '0', '0', '1', '0'])}"
    cut = out / f"BMAJ/{sep}3{dot}0"
    flip_byte(flipped)
    truncate(cut)
    summary = run(params(inputs, out, zarr_format=fmt), collection="lwa")
    assert (summary["repaired"], summary["written"], summary["skipped"]) == (2, 2, 2)
    assert tree_digest(out) == ref  # the same bytes as before the damage
    np.testing.assert_array_equal(_sky(out), ref_sky)
    again = run(params(inputs, out, zarr_format=fmt), collection="lwa")
    assert (again["repaired"], again["written"]) == (0, 0)


def test_damaged_step_flag_chunk_is_rewritten(built) -> None:
    inputs, out, ref = built
    truncate(out / "step_complete/c/2", keep=0.0)  # an empty file: the codec would fail
    summary = run(params(inputs, out), collection="lwa")
    assert (summary["repaired"], summary["written"]) == (1, 1)
    assert tree_digest(out) == ref


def test_missing_chunk_is_rewritten(built) -> None:
    inputs, out, ref = built
    (out / "SKY/c/0/0/0/1/1").unlink()  # would silently read as NaN
    summary = run(params(inputs, out), collection="lwa")
    assert (summary["repaired"], summary["written"]) == (1, 1)
    assert tree_digest(out) == ref


def test_chunk_shared_by_time_steps_rewrites_all_of_them(tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "lwa.zarr"
    make_lwa(inputs)
    p = params(inputs, out, chunks={"time": 4, "frequency": -1, "sky": 32})
    run(p, collection="lwa")
    ref = tree_digest(out)
    flip_byte(out / "SKY/c/0/0/0/0/1")
    summary = run(p, collection="lwa")
    assert (summary["repaired"], summary["written"]) == (4, 4)
    assert tree_digest(out) == ref


def test_damaged_coordinate_chunk_is_rewritten_from_the_grid(built) -> None:
    inputs, out, ref = built
    flip_byte(out / "frequency/c/0")
    truncate(out / "l/c/0")
    summary = run(params(inputs, out), collection="lwa")
    assert (summary["repaired"], summary["written"]) == (2, 0)  # no time step read again
    assert tree_digest(out) == ref


def test_damage_whose_inputs_are_gone_is_refused_untouched(built) -> None:
    inputs, out, _ = built
    for f in sorted(inputs.glob("20240524_070011_*")):  # time step 1 left the input directory
        f.unlink()
    run(params(inputs, out), collection="lwa")  # append-only: the step stays in the store
    flip_byte(out / "SKY/c/1/0/0/0/1")
    before = tree_digest(out)
    with pytest.raises(MissingInputError) as info:
        run(params(inputs, out), collection="lwa")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{out.as_posix()}/SKY/c/1/0/0/0/1: chunk bytes differ from the SHA-256")
    assert "time step 20240524_070011 cannot be rewritten" in msg
    assert f"dvc checkout {out.as_posix()}" in msg and "zarr.rebuild=true" in msg
    assert tree_digest(out) == before  # nothing touched, nothing deleted


def test_dry_run_reports_damage_and_writes_nothing(built) -> None:
    inputs, out, _ = built
    flip_byte(out / "SKY/c/2/0/0/0/0")
    before = tree_digest(out)
    summary = run(params(inputs, out), collection="lwa", dry_run=True)
    assert (summary["repaired"], summary["written"]) == (1, 1)
    assert tree_digest(out) == before


# --- nothing deleted implicitly ------------------------------------------------------------


def _inodes(out: Path) -> dict[str, int]:
    return {k: (out / k).stat().st_ino for k in chunk_files(out)}


@pytest.mark.parametrize("value", ["no", "false", "off", "0", 0, None])
def test_rebuild_must_be_a_real_boolean(built, value: object) -> None:
    """Regression: ``zarr.rebuild=no`` was truthy and wiped the store."""
    inputs, out, ref = built
    inodes = _inodes(out)
    try:
        run(params(inputs, out, rebuild=value), collection="lwa")
    except ConfigError as exc:  # refused by name...
        assert str(exc).startswith("zarr.rebuild") and "\n" not in str(exc)
    assert _inodes(out) == inodes  # ...or read as false: never a rebuild
    assert tree_digest(out) == ref
    with pytest.raises(ConfigError, match=r"^zarr\.rebuild: expected true or false, found 'no'"):
        WriteOptions(rebuild="no")  # type: ignore[arg-type]


def test_explicit_rebuild_replaces_the_store(built) -> None:
    inputs, out, ref = built
    (out / "marker").write_text("from the old store")
    summary = run(params(inputs, out, rebuild=True), collection="lwa")
    assert summary["written"] == 4
    assert not (out / "marker").exists()  # really a new store...
    assert tree_digest(out) == ref  # ...with the same bytes
    assert not list(out.parent.glob(".lwa.zarr.*"))  # no temporary left beside it


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"chunks": {"time": 1, "frequency": -1, "sky": 16}}, "chunks.sky: 32 stored vs 16"),
        ({"chunks": {"time": 2, "frequency": -1, "sky": 32}}, "chunks.time: 1 stored vs 2"),
        (
            {"compressor": {"name": "blosc", "level": 1, "cname": "lz4", "shuffle": "shuffle"}},
            "compressor.name: 'zstd' stored vs 'blosc' configured",
        ),
        ({"compressor": {"name": "zstd", "level": 3}}, "compressor.level: 1 stored vs 3"),
        ({"zarr_format": 2}, "zarr_format: 3 stored vs 2 configured"),
    ],
    ids=["sky", "time", "compressor", "level", "format"],
)
def test_layout_change_is_refused_naming_rebuild(built, change: dict, says: str) -> None:
    inputs, out, ref = built
    p = params(inputs, out, **change)
    with pytest.raises(ConfigError) as info:
        run(p, collection="lwa")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{out.as_posix()}: the store's layout differs")
    assert says in msg and "set zarr.rebuild=true" in msg
    assert tree_digest(out) == ref  # nothing touched
    p["zarr"]["rebuild"] = True
    run(p, collection="lwa")  # asked for: rebuilt with the new layout
    manifest = read_manifest(out)
    assert manifest is not None
    assert {k: v for k, v in change.items() if k != "zarr_format"}.items() <= {
        k: manifest.layout[k] for k in change if k != "zarr_format"
    }.items()


def test_unreadable_store_is_refused_untouched(built) -> None:
    inputs, out, _ = built
    (out / "zarr.json").write_text("<html>502 Bad Gateway</html>")
    before = tree_digest(out)
    with pytest.raises(InputFileError, match=rf"^{out.as_posix()}: not a readable Zarr store"):
        run(params(inputs, out), collection="lwa")
    assert tree_digest(out) == before


def test_foreign_directory_is_refused_and_empty_one_is_used(tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "lwa.zarr"
    make_lwa(inputs, n_times=1)
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputFileError, match=r"holds no fits_to_zarr manifest.*zarr\.rebuild=true"):
        run(params(inputs, out), collection="lwa")
    assert (out / "notes.txt").read_text() == "mine"
    shutil.rmtree(out)
    out.mkdir()  # empty: nothing to lose
    assert run(params(inputs, out), collection="lwa")["written"] == 1


def test_leftover_of_a_killed_creation_is_cleaned(tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "lwa.zarr"
    make_lwa(inputs, n_times=1)
    leftover = tmp_path / ".lwa.zarr.creating"
    (leftover / "SKY").mkdir(parents=True)
    run(params(inputs, out), collection="lwa")
    assert not leftover.exists() and read_manifest(out) is not None


def test_layouts_write_the_image_variable_validate_reads() -> None:
    from astropipe.zarrcube.layouts import layout_for

    for kind, var in IMAGE_VARS.items():
        static = {"frequency_hz": [1.0], "polarization": ["I"], "bunit": "Jy/beam"}
        assert layout_for(kind).variables(static)[0].name == var
