"""The calibrate_images stage on the simulated night: outputs, determinism, bad inputs."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from astropipe.calibration import stage
from astropipe.calibration.simulate import simulate_night
from astropipe.errors import AstropipeError, GridMismatchError, InputFileError, MissingInputError

ROOT = Path(__file__).resolve().parents[1]
NIGHT = ROOT / "data/sample/ccd/night"


def params(inputs: Path, **extra: object) -> dict:
    return {"calibration": {"inputs": {"path": str(inputs)}, **extra}, "compute": {"workers": 2}}


def digests(*dirs: Path) -> dict[str, str]:
    return {
        str(p.relative_to(p.parents[1])): hashlib.sha256(p.read_bytes()).hexdigest()
        for d in dirs
        for p in sorted(d.glob("*"))
    }


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("calib")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        metrics = stage.run(params(NIGHT))
    return work, metrics


def test_metrics_count_frames_cosmics_and_master_noise(sample_run):
    work, metrics = sample_run
    assert metrics["frames"] == {"bias": 5, "dark": 3, "flat": 6, "science": 4, "skipped": 0}
    on_disk = json.loads((work / "reports/metrics/calibrate_images.json").read_text())
    assert on_disk["frames"] == metrics["frames"]
    masters = metrics["masters"]
    assert sorted(masters) == [
        "bias_SIMCAM_1x1",
        "dark_SIMCAM_1x1",
        "flat_SIMCAM_1x1_R",
        "flat_SIMCAM_1x1_V",
    ]
    # Master bias noise: the fixed column pattern (2 ADU rms = 3 e-) plus 6 e- read noise
    # reduced by a 5-frame median; the dark median is the simulated 0.02 e-/s.
    assert 2.5 < masters["bias_SIMCAM_1x1"]["noise"] < 6.0
    assert masters["dark_SIMCAM_1x1"]["median"] == pytest.approx(0.02, abs=0.005)
    assert masters["flat_SIMCAM_1x1_V"]["median"] == pytest.approx(1.0, abs=1e-6)
    for name, sci in metrics["science"].items():
        assert 40 <= sci["cosmic_ray_pixels"] <= 150, name  # 25 tracks of 1-4 pixels injected
        assert sci["saturated_pixels"] > 0  # the bright star
        assert sci["bad_flat_pixels"] == 12  # the dead pixels of the model


def test_science_files_have_sci_err_mask_and_keep_header(sample_run):
    work, _ = sample_run
    out = work / "data/interim/calibration/science"
    assert sorted(p.name for p in out.iterdir()) == [
        "sci_R_01.fits",
        "sci_R_02.fits",
        "sci_V_01.fits",
        "sci_V_02.fits",
    ]
    with fits.open(out / "sci_R_01.fits", checksum=True) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "SCI", "ERR", "MASK"]
        assert hdul["SCI"].data.dtype == np.dtype(">f4") and hdul["MASK"].data.dtype == np.uint8
        for hdu in (hdul[0], hdul["SCI"]):
            h = hdu.header
            assert h["DATE-OBS"] and h["FILTER"] == "R" and h["EXPTIME"] == 120.0
            assert h["CTYPE1"] == "RA---TAN" and h["CRPIX1"] == 128.5
            assert h["BUNIT"] == "electron" and "BIASSEC" not in h and "DATE" not in h
        history = [str(c) for c in hdul[0].header["HISTORY"]]
    masters = work / "data/interim/calibration/masters"
    for role, name in (
        ("bias", "bias_SIMCAM_1x1"),
        ("dark", "dark_SIMCAM_1x1"),
        ("flat", "flat_SIMCAM_1x1_R"),
    ):
        sha = hashlib.sha256((masters / f"{name}.fits").read_bytes()).hexdigest()
        i = history.index(f"{role} master: {name}.fits")
        assert history[i + 1] == f"sha256 {sha}"


def test_second_run_is_byte_identical(sample_run, tmp_path, monkeypatch):
    work, _ = sample_run
    monkeypatch.chdir(tmp_path)
    other = params(NIGHT, tile_rows=19)  # other bands and one worker: same bytes
    other["compute"] = {"scheduler": "synchronous", "workers": 1}
    stage.run(other)
    first = digests(
        work / "data/interim/calibration/masters", work / "data/interim/calibration/science"
    )
    second = digests(
        tmp_path / "data/interim/calibration/masters", tmp_path / "data/interim/calibration/science"
    )
    assert first == second and len(first) == 8
    assert (work / "reports/metrics/calibrate_images.json").read_bytes() == (
        tmp_path / "reports/metrics/calibrate_images.json"
    ).read_bytes()


def test_dry_run_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary = stage.run(params(NIGHT), dry_run=True)
    assert summary["frames"]["science"] == 4 and len(summary["masters"]) == 4
    assert list(tmp_path.iterdir()) == []


def test_simulator_regenerates_the_committed_night(tmp_path):
    simulate_night(tmp_path)
    sums = dict(reversed(line.split()) for line in (NIGHT / "SHA256SUMS").read_text().splitlines())
    regenerated = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    assert regenerated == sums, (
        "re-run `python -m astropipe.calibration.simulate data/sample/ccd/night`"
    )


# --- bad inputs: one clear line, naming the file(s), and nothing written ----------------------


def _night_copy(tmp_path: Path) -> Path:
    d = tmp_path / "night"
    shutil.copytree(NIGHT, d)
    return d


def _edit(path: Path, **changes: object) -> None:
    with fits.open(path, mode="update") as hdul:
        for key, value in changes.items():
            if value is None:
                del hdul[0].header[key]
            else:
                hdul[0].header[key] = value


def _break_shape(d: Path) -> None:
    with fits.open(d / "bias_02.fits") as hdul:
        data, header = hdul[0].data, hdul[0].header.copy()
    wider = np.concatenate([data, data[:, -4:]], axis=1)
    fits.PrimaryHDU(wider, header=header).writeto(d / "bias_02.fits", overwrite=True)


def _truncate(d: Path) -> None:
    p = d / "sci_V_01.fits"
    p.write_bytes(p.read_bytes()[:50_000])


CASES = {
    "shape": (_break_shape, GridMismatchError, ["bias_02.fits", "bias_01.fits", "shape"]),
    "binning": (
        lambda d: _edit(d / "sci_R_02.fits", XBINNING=2, YBINNING=2),
        GridMismatchError,
        ["sci_R_02.fits", "bias_01.fits", "binning 2x2"],
    ),
    "dark_exptime": (
        lambda d: _edit(d / "dark_02.fits", EXPTIME=None),
        InputFileError,
        ["dark_02.fits", "EXPTIME"],
    ),
    "no_flat": (
        lambda d: _edit(d / "sci_R_01.fits", FILTER="I"),
        MissingInputError,
        ["sci_R_01.fits", "FILTER='I'", "no flat"],
    ),
    "no_bias": (
        lambda d: [p.unlink() for p in d.glob("bias_*.fits")],
        MissingInputError,
        ["no bias frames"],
    ),
    "truncated": (_truncate, InputFileError, ["sci_V_01.fits", "truncated"]),
    # sci_V_01.fits and sci_V_01.fit would both be written as sci_V_01.fits (one lost)
    "same_stem": (
        lambda d: shutil.copy(d / "sci_V_01.fits", d / "sci_V_01.fit"),
        InputFileError,
        ["sci_V_01", "both would be written as sci_V_01.fits"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_line_error_and_writes_nothing(case, tmp_path, monkeypatch):
    breaker, error, words = CASES[case]
    d = _night_copy(tmp_path)
    breaker(d)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(error) as info:
        stage.run(params(d))
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    assert list(work.iterdir()) == []


def test_failure_midway_leaves_previous_outputs_untouched(sample_run, tmp_path, monkeypatch):
    work, _ = sample_run
    shutil.copytree(work / "data", tmp_path / "data")
    before = digests(
        tmp_path / "data/interim/calibration/masters", tmp_path / "data/interim/calibration/science"
    )
    monkeypatch.chdir(tmp_path)

    def boom(*args: object, **kwargs: object) -> None:
        raise InputFileError("simulated failure while writing a science frame")

    monkeypatch.setattr(stage, "write_science", boom)
    with pytest.raises(InputFileError):
        stage.run(params(NIGHT, cosmics={"enabled": False}))
    after = digests(
        tmp_path / "data/interim/calibration/masters", tmp_path / "data/interim/calibration/science"
    )
    assert after == before
    leftovers = [p.name for p in (tmp_path / "data/interim/calibration").iterdir()]
    assert sorted(leftovers) == ["masters", "science"]


def test_stage_script_prints_one_line_and_exits_1(tmp_path):
    d = _night_copy(tmp_path)
    for p in d.glob("bias_*.fits"):
        p.unlink()
    (tmp_path / "params.yaml").write_text(json.dumps(params(d)))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "stages/calibrate_images.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "no bias frames" in lines[0], proc.stderr


def test_unknown_config_key_lists_valid_keys():
    with pytest.raises(AstropipeError, match="valid keys"):
        stage.run({"calibration": {"bias": {"methd": "median"}}})


def _missing_spec(tmp_path: Path):
    from astropipe.calibration.crchild import PassSpec, StoredRows

    rows = StoredRows(str(tmp_path / "missing.fits"), 2880, ">f4", (16, 16))
    return PassSpec(rows, rows, rows, 5.0, 6e4, {}, 0, None, 0)


def test_cosmic_ray_child_error_comes_back_as_itself(tmp_path: Path) -> None:
    """An exception in the child (here: its band file is gone) is re-raised in the parent."""
    from astropipe.calibration.crchild import run_in_child

    with pytest.raises(FileNotFoundError, match="missing.fits"):
        run_in_child(_missing_spec(tmp_path), [(0, 8), (8, 16)], print, tasks_per_child=1)


def test_cosmic_ray_child_that_dies_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that exits before answering (as after the OOM killer) is a CosmicsChildError."""
    from astropipe.calibration.crchild import CosmicsChildError, run_in_child

    monkeypatch.setattr(sys, "executable", shutil.which("false"))
    with pytest.raises(CosmicsChildError, match="missing.fits: the cosmic-ray child process died"):
        run_in_child(_missing_spec(tmp_path), [(0, 8)], print, tasks_per_child=1)


def _cannot_rebuild() -> None:
    raise TypeError("__init__() missing 2 required keyword-only arguments")


class _Unloadable:
    def __reduce__(self):
        return (_cannot_rebuild, ())


def test_cosmic_ray_child_reply_that_cannot_be_rebuilt_is_one_line() -> None:
    """Review 1.4: an error the child sends back that cannot be unpickled here (as
    HeaderValueError could not) is a CosmicsChildError naming the frame, not a bare TypeError."""
    import io
    import pickle

    from astropipe.calibration.crchild import CosmicsChildError, _reply

    reply = io.BytesIO(pickle.dumps(("error", _Unloadable())))
    with pytest.raises(CosmicsChildError, match=r"sci\.fits: .*reply cannot be read.*TypeError"):
        _reply(reply, "sci.fits")
    with pytest.raises(EOFError):
        _reply(io.BytesIO(b""), "sci.fits")
