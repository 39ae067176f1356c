"""The frames and cubes contracts on synthetic FITS frames and Zarr stores: good ones pass, each
broken thing fails with one line naming the artifact, the column and the expectation."""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from astropipe.calibration.calibrate import master_history, master_imagetyp  # noqa: E402
from astropipe.config import load_params  # noqa: E402
from astropipe.errors import (  # noqa: E402
    ConfigError,
    InputFileError,
    MissingInputError,
    ValidationFailed,
)
from astropipe.provenance import sha256_file  # noqa: E402
from astropipe.validation.stage import run  # noqa: E402
from zarr_helpers import flip_byte, seal, truncate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = Path("reports/validation/summary.json")


@pytest.fixture(scope="module")
def params() -> dict[str, Any]:
    """The repository's params without the ZTF tables: frames and cubes at their conf paths."""
    p = load_params(ROOT / "params.yaml")
    p["validation"]["tables"] = {}
    p["validation"].pop("tess_lightcurves", None)  # its own tests: test_tess_stage
    return p


def _paths(params: dict[str, Any]) -> dict[str, Path]:
    v = params["validation"]
    c = v["cubes"]["collections"]
    return {
        "masters": Path(v["frames"]["masters"]),
        "science": Path(v["frames"]["science"]),
        "lwa": Path(c["lwa"]["path"]),
        "lwa_inputs": Path(c["lwa"]["input_dir"]),
        "ccd": Path(c["ccd"]["path"]),
    }


def _write(path: Path, hdus: list[fits.PrimaryHDU | fits.ImageHDU]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path, overwrite=True)


def write_frames(paths: dict[str, Path]) -> None:
    """A master bias and R flat; two R science frames (16x16) naming both with their SHA-256."""
    rng = np.random.default_rng(1)
    shape = (16, 16)
    masters = {
        "bias": ("bias_CAM_1x1.fits", master_imagetyp("bias"), rng.normal(0, 1, shape), None),
        "flat": (
            "flat_CAM_1x1_R.fits",
            master_imagetyp("flat"),
            1 + rng.normal(0, 0.01, shape),
            "R",
        ),
    }
    for name, imagetyp, data, filt in masters.values():
        head = fits.Header({"IMAGETYP": imagetyp})  # written as calibrate_images does
        if filt:
            head["FILTER"] = filt
        err = fits.ImageHDU(np.full(shape, 0.1, np.float32), name="ERR")
        _write(paths["masters"] / name, [fits.PrimaryHDU(data.astype(np.float32), head), err])
    for i in (1, 2):
        head = fits.Header({"DATE-OBS": f"2026-05-23T21:{10 + 5 * i}:00.000", "FILTER": "R"})
        head["EXPTIME"] = 120.0
        for role, (name, *_rest) in masters.items():
            for card in master_history(role, name, sha256_file(paths["masters"] / name)):
                head.add_history(card)
        mask = np.zeros(shape, np.uint8)
        mask[0, :3] = [1, 2, 4]  # the three known bits
        _write(
            paths["science"] / f"sci_R_0{i}.fits",
            [
                fits.PrimaryHDU(header=head),
                fits.ImageHDU(rng.normal(500, 20, shape).astype(np.float32), head, name="SCI"),
                fits.ImageHDU(np.full(shape, 22.0, np.float32), name="ERR"),
                fits.ImageHDU(mask, name="MASK"),
            ],
        )


def _store(ds: xr.Dataset, path: Path, kind: str, files: list[list[str]]) -> None:
    steps = [
        {"key": str(i), "time_mjd": float(t), "files": dict.fromkeys(f, "0" * 64)}
        for i, (t, f) in enumerate(zip(ds["time"].values, files, strict=True))
    ]
    ds.attrs["astropipe"] = {"collection": kind, "layout": {"kind": kind}, "timesteps": steps}
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_zarr(path, mode="w", consolidated=False, zarr_format=3)
    seal(path)  # chunk checksums, as fits_to_zarr records them


def lwa_dataset() -> xr.Dataset:
    """3 time steps x 2 frequencies of a 16x16 all-sky image; SKY and ra NaN beyond the horizon."""
    n = 16
    lm = np.linspace(-1.1, 1.1, n)
    beyond = lm[:, None] ** 2 + lm[None, :] ** 2 > 1
    ra = np.where(beyond, np.nan, 180.0 + 30 * lm[:, None] + 0 * lm[None, :])
    sky = np.broadcast_to(np.where(beyond, np.nan, 1.0), (3, 2, 1, n, n)).astype(np.float32)
    beam = np.array([[0.5, 0.4]] * 3)
    return xr.Dataset(
        {
            "SKY": (("time", "frequency", "polarization", "l", "m"), sky.copy()),
            "BMAJ": (("time", "frequency"), beam),
            "BMIN": (("time", "frequency"), beam * 0.8),
            "step_complete": ("time", np.ones(3, np.uint8)),
        },
        coords={
            "time": [60454.2916, 60454.2917, 60454.2918],
            "frequency": [41e6, 46e6],
            "polarization": ["I"],
            "l": lm,
            "m": lm,
            "ra": (("l", "m"), ra),
        },
    )


def ccd_dataset() -> xr.Dataset:
    """Two 8x8 calibrated frames (the two science frames of :func:`write_frames`)."""
    return xr.Dataset(
        {
            "SCI": (("time", "y", "x"), np.full((2, 8, 8), 500.0, np.float32)),
            "step_complete": ("time", np.ones(2, np.uint8)),
        },
        coords={"time": [61183.885, 61183.889], "exposure": ("time", [120.0, 120.0])},
    )


def write_cubes(
    paths: dict[str, Path],
    lwa: xr.Dataset | None = None,
    ccd: xr.Dataset | None = None,
) -> None:
    """Both stores, and the 6 LWA input files the lwa store records (names match the conf glob)."""
    lwa = lwa_dataset() if lwa is None else lwa
    lwa_files = []
    for t in range(lwa.sizes["time"]):
        names = [
            paths["lwa_inputs"] / f"20240524_07000{t}_{f}MHz_averaged_sim-I-image.fits"
            for f in (41, 46)
        ]
        for p in names:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"")
        lwa_files.append([p.as_posix() for p in names])
    _store(lwa, paths["lwa"], "lwa", lwa_files)
    science = [[p.as_posix()] for p in sorted(paths["science"].glob("*.fits"))]
    _store(ccd_dataset() if ccd is None else ccd, paths["ccd"], "ccd", science)


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, params: dict[str, Any]) -> Path:
    """A working directory holding good frames and cubes at the configured relative paths."""
    monkeypatch.chdir(tmp_path)
    paths = _paths(params)
    write_frames(paths)
    write_cubes(paths)
    return tmp_path


def test_good_frames_and_cubes_pass(workdir: Path, params: dict[str, Any], gx_context: Any) -> None:
    summary = run(params, context=gx_context)
    assert summary["success"] is True
    assert list(summary["tables"]) == ["frames", "cubes"]  # contract order
    assert summary["tables"]["frames"]["rows"] == 4  # 2 masters + 2 science frames
    assert summary["tables"]["cubes"]["rows"] == 3 * 2 + 2  # lwa: time x frequency; ccd: time
    assert json.loads(SUMMARY.read_text()) == summary
    # the data docs list the summary rows the contracts ran on
    frames_doc = Path("reports/validation/docs/frames.md").read_text()
    assert "## Summary rows (4)" in frames_doc
    assert "| data/interim/calibration/science/sci_R_02.fits | science |" in frames_doc
    cubes_doc = Path("reports/validation/docs/cubes.md").read_text()
    assert "| data/processed/zarr/lwa.zarr[time=2,frequency=4.6e+07] | lwa | lwa | 2 |" in cubes_doc
    # NaN pixels beyond the horizon (ra NaN) do not count against the finite fraction
    assert np.isnan(lwa_dataset()["SKY"].values).any()


def _frame(name: str, ext: str, change: Callable[[np.ndarray], None]) -> Callable[..., None]:
    def apply(paths: dict[str, Path]) -> None:
        path = paths["science"] / name
        with fits.open(path, mode="update") as hdul:
            data = hdul[ext].data
            change(data)
            hdul[ext].data = data

    return apply


def _set_exptime(paths: dict[str, Path]) -> None:
    with fits.open(paths["science"] / "sci_R_02.fits", mode="update") as hdul:
        hdul[0].header["EXPTIME"] = 0.0


def _lwa(change: Callable[[xr.Dataset], None]) -> Callable[..., None]:
    def apply(paths: dict[str, Path]) -> None:
        ds = lwa_dataset()
        change(ds)
        write_cubes(paths, lwa=ds)

    return apply


def _swap_times(ds: xr.Dataset) -> None:
    ds.coords["time"] = [60454.2916, 60454.2918, 60454.2917]


def _set(var: str, index: tuple[Any, ...], value: float) -> Callable[[xr.Dataset], None]:
    def change(ds: xr.Dataset) -> None:
        ds[var].values[index] = value

    return change


def _unlink(*parts: str) -> Callable[..., None]:
    def apply(paths: dict[str, Path]) -> None:
        key, name = parts
        if name == "*":
            next(iter(sorted(paths[key].glob("*.fits")))).unlink()
        else:
            (paths[key] / name).unlink()

    return apply


def _truncate(paths: dict[str, Path]) -> None:
    path = paths["science"] / "sci_R_01.fits"
    path.write_bytes(path.read_bytes()[:4000])


def _damage(hurt: Callable[[Path], None], var: str) -> Callable[..., None]:
    """Damage the first chunk object of ``var`` in the lwa store (bytes only, as a disk would)."""

    def apply(paths: dict[str, Path]) -> None:
        hurt(_first_chunk(paths, var))

    return apply


def _first_chunk(paths: dict[str, Path], var: str) -> Path:
    return sorted(p for p in (paths["lwa"] / var).rglob("*") if p.is_file() and "c" in p.parts)[0]


SCI1 = "data/interim/calibration/science/sci_R_01.fits"
SCI2 = "data/interim/calibration/science/sci_R_02.fits"
LWA = "data/processed/zarr/lwa.zarr"
BETWEEN = "expect_column_values_to_be_between"

BREAKS: dict[str, tuple[Callable[..., None], str, str, str, str]] = {
    # id: (break, table, column, expectation, artifact named first)
    "err-not-positive": (
        _frame("sci_R_01.fits", "ERR", lambda a: a.__setitem__((5, slice(0, 4)), -1.0)),
        "frames",
        "err_positive_fraction",
        BETWEEN,
        SCI1,
    ),
    "nan-frame": (
        _frame("sci_R_02.fits", "SCI", lambda a: a.fill(np.nan)),
        "frames",
        "sci_finite_fraction",
        BETWEEN,
        SCI2,
    ),
    "unknown-mask-bit": (
        _frame("sci_R_01.fits", "MASK", lambda a: a.__setitem__((3, 3), 16)),
        "frames",
        "mask_unknown_bits",
        BETWEEN,
        SCI1,
    ),
    "exptime-zero": (_set_exptime, "frames", "exptime", BETWEEN, SCI2),
    "truncated-frame": (
        _truncate,
        "frames",
        "problem",
        "expect_column_values_to_be_null",
        SCI1,
    ),
    "missing-master": (
        _unlink("masters", "flat_CAM_1x1_R.fits"),
        "frames",
        "masters_check",
        "expect_column_values_to_be_in_set",
        SCI1,
    ),
    "time-not-increasing": (
        _lwa(_swap_times),
        "cubes",
        "time_step",
        BETWEEN,
        f"{LWA}[time=2,frequency=4.1e+07]",
    ),
    "step-incomplete": (
        _lwa(_set("step_complete", (1,), 0)),
        "cubes",
        "step_complete",
        "expect_column_values_to_be_in_set",
        f"{LWA}[time=1,frequency=4.1e+07]",
    ),
    "bmin-above-bmaj": (
        _lwa(_set("BMIN", (2, 1), 0.9)),
        "cubes",
        "bmaj,bmin",
        "expect_column_pair_values_a_to_be_greater_than_b",
        f"{LWA}[time=2,frequency=4.6e+07]",
    ),
    "nan-inside-horizon": (
        _lwa(_set("SKY", (0, 1, 0, 8, 8), np.nan)),
        "cubes",
        "finite_fraction,min_finite_fraction",
        "expect_column_pair_values_a_to_be_greater_than_b",
        f"{LWA}[time=0,frequency=4.6e+07]",
    ),
    "flipped-chunk": (
        _damage(flip_byte, "SKY"),
        "cubes",
        "problem",
        "expect_column_values_to_be_null",
        f"{LWA}[time=0,frequency=4.1e+07]",
    ),
    "truncated-chunk": (
        _damage(truncate, "BMAJ"),
        "cubes",
        "problem",
        "expect_column_values_to_be_null",
        f"{LWA}[time=0,frequency=4.1e+07]",
    ),
    "missing-input-file": (
        _unlink("lwa_inputs", "*"),
        "cubes",
        "inputs_recorded,inputs_expected",
        "expect_column_pair_values_to_be_equal",
        f"{LWA}[time=0,frequency=4.1e+07]",
    ),
}


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_one_break_fails_naming_artifact_column_expectation(
    case: str, workdir: Path, params: dict[str, Any], gx_context: Any
) -> None:
    change, table, column, expectation, artifact = BREAKS[case]
    change(_paths(params))
    with pytest.raises(ValidationFailed) as info:
        run(params, context=gx_context)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{artifact}")
    assert f"table '{table}', column '{column}': {expectation} failed" in msg
    summary = json.loads(SUMMARY.read_text())
    first = summary["tables"][table]["failures"][0]
    assert (first["column"], first["expectation"]) == (column, expectation)
    assert first["observed"]["unexpected_items"][0] == artifact
    other = ({"frames", "cubes"} - {table}).pop()
    assert summary["tables"][other]["success"] is True


@pytest.mark.parametrize("hurt", [flip_byte, truncate], ids=["flipped", "truncated"])
def test_damaged_chunk_is_named_not_decoded(
    hurt: Callable[[Path], None], workdir: Path, params: dict[str, Any], gx_context: Any
) -> None:
    """Regression: a flipped chunk crashed validate inside the codec (or passed, decoded to
    other numbers); now the row names the chunk and the fix, and nothing decodes it."""
    paths = _paths(params)
    chunk = _first_chunk(paths, "SKY")
    hurt(chunk)
    with pytest.raises(ValidationFailed) as info:
        run(params, context=gx_context)
    msg = str(info.value)
    name = chunk.as_posix()  # relative: data/processed/zarr/lwa.zarr/SKY/c/0/0/0/0/0
    assert "\n" not in msg and msg.startswith(f"{LWA}[time=0,frequency=4.1e+07]")
    assert f"{name}: chunk bytes differ from the SHA-256 recorded" in msg
    assert "run `dvc repro fits_to_zarr@lwa` to rewrite it from its inputs" in msg
    failures = json.loads(SUMMARY.read_text())["tables"]["cubes"]["failures"]
    assert failures[0]["column"] == "problem"
    assert failures[0]["observed"]["unexpected_count"] == 2  # time 0 (its chunk) x 2 frequencies


def test_store_without_chunk_checksums_fails_by_name(
    workdir: Path, params: dict[str, Any], gx_context: Any
) -> None:
    store = _paths(params)["ccd"]
    doc = json.loads((store / "zarr.json").read_text())
    del doc["attributes"]["astropipe"]["chunk_sha256"]
    (store / "zarr.json").write_text(json.dumps(doc))
    with pytest.raises(ValidationFailed, match=r"ccd\.zarr: no chunk checksums in its manifest"):
        run(params, context=gx_context)


def test_err_fraction_and_observed_values_are_exact(
    workdir: Path, params: dict[str, Any], gx_context: Any
) -> None:
    # 4 of the 253 unmasked pixels (256 - 3 flagged) get ERR <= 0
    BREAKS["err-not-positive"][0](_paths(params))
    with pytest.raises(ValidationFailed, match=r"1 of 2 non-null values unexpected"):
        run(params, context=gx_context)
    first = json.loads(SUMMARY.read_text())["tables"]["frames"]["failures"][0]
    assert first["observed"]["unexpected_examples"] == [round(249 / 253, 6)]


def test_missing_store_names_the_build_command(
    workdir: Path, params: dict[str, Any], gx_context: Any
) -> None:
    shutil.rmtree(_paths(params)["ccd"])
    with pytest.raises(MissingInputError) as info:
        run(params, context=gx_context)
    assert str(info.value) == (
        "data/processed/zarr/ccd.zarr: cube 'ccd' not found; build it with "
        "`dvc repro fits_to_zarr@ccd`."
    )


def test_unreadable_store_names_the_store(
    workdir: Path, params: dict[str, Any], gx_context: Any
) -> None:
    store = _paths(params)["lwa"]
    shutil.rmtree(store)
    store.mkdir()
    (store / "zarr.json").write_text("<html>502 Bad Gateway</html>")
    with pytest.raises(InputFileError, match=r"^data/processed/zarr/lwa\.zarr: not a readable"):
        run(params, context=gx_context)
    assert not Path("reports").exists()


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (("frames", "min_finite_fraction"), 1.5, r"validation\.frames\.min_finite_fraction"),
        (("frames", "mjd"), [60000.0, 50000.0], r"validation\.frames\.mjd"),
        (("frames", "colour"), "red", r"unknown key\(s\) \['colour'\]"),
        (("cubes", "collections", "lwa", "glob_"), "*", r"unknown key\(s\) \['glob_'\]"),
        (
            ("cubes", "collections", "ccd", "min_finite_fraction"),
            -0.1,
            r"validation\.cubes\.collections\.ccd\.min_finite_fraction",
        ),
    ],
)
def test_config_errors_name_the_key(
    workdir: Path, params: dict[str, Any], path: tuple[str, ...], value: Any, match: str
) -> None:
    p = copy.deepcopy(params)
    node = p["validation"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=match):
        run(p, dry_run=True)


def test_outputs_are_byte_identical_across_runs(
    workdir: Path, params: dict[str, Any], gx_context: Any
) -> None:
    _lwa(_set("BMIN", (0, 0), 0.9))(_paths(params))
    outputs = []
    for context in (gx_context, None):
        with pytest.raises(ValidationFailed):
            run(params, context=context)
        docs = sorted(Path("reports/validation/docs").iterdir())
        outputs.append({p.as_posix(): p.read_bytes() for p in [SUMMARY, *docs]})
    assert outputs[0] == outputs[1]
    assert str(workdir) not in b"".join(outputs[0].values()).decode()


def test_calibration_header_contract_round_trips() -> None:
    """validate reads what calibrate_images writes through the same two functions."""
    from astropipe.calibration.calibrate import MasterUsed, master_kind, masters_used

    head = fits.Header()
    head.add_history("input: raw_01.fits")  # other HISTORY cards are not masters
    for role, name in (("bias", "bias_CAM_1x1.fits"), ("flat", "flat_CAM_1x1_R.fits")):
        for card in master_history(role, name, role[0] * 64):
            head.add_history(card)
    assert masters_used(head["HISTORY"]) == [
        MasterUsed("bias", "bias_CAM_1x1.fits", "b" * 64),
        MasterUsed("flat", "flat_CAM_1x1_R.fits", "f" * 64),
    ]
    assert masters_used(["dark master: d.fits"]) == [MasterUsed("dark", "d.fits", None)]
    assert [master_kind(master_imagetyp(k)) for k in ("bias", "dark", "flat")] == [
        "bias",
        "dark",
        "flat",
    ]
    assert master_kind("Light Frame") is None
