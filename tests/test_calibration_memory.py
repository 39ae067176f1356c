"""calibrate_images in bounded memory: streamed FITS writes, exact band-wise statistics, and
outputs that do not depend on the memory limit."""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from astropipe.calibration import science, stage
from astropipe.calibration.config import CalibrationConfig
from astropipe.calibration.masters import build_masters
from astropipe.calibration.median import exact_median, numpy_mean
from astropipe.calibration.science import calibrate_frame, write_science
from astropipe.calibration.simulate import NightModel, simulate_night
from astropipe.io import fits as fitsio
from astropipe.io.fitsstream import ImageSpec, StreamedFits

ROOT = Path(__file__).resolve().parents[1]
NIGHT = ROOT / "data/sample/ccd/night"


# --- streamed FITS ---------------------------------------------------------------------------


def _astropy_file(path: Path, primary: fits.Header, images: list[tuple[str, np.ndarray]]) -> None:
    """What calibrate_images wrote before streaming: HDUList, add_checksum, writeto."""
    hdus = [fits.PrimaryHDU(header=primary.copy())]
    for name, data in images:
        hdu = fits.ImageHDU(data, header=primary.copy() if name == "SCI" else None, name=name)
        hdu.header["BUNIT"] = "electron"
        hdus.append(hdu)
    hdul = fits.HDUList(hdus)
    for hdu in hdul:
        hdu.add_checksum(when="astropipe")
    hdul.writeto(path, output_verify="exception")


@pytest.mark.parametrize("shape", [(37, 53), (300, 271), (1, 1), (64, 64), (7, 3)])
def test_streamed_file_is_byte_identical_to_astropy(tmp_path, shape):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    sci = rng.normal(0, 1e3, shape).astype(np.float32)
    sci[0, 0] = np.nan
    err = rng.random(shape).astype(np.float32)
    mask = (rng.random(shape) * 16).astype(np.uint8)  # odd widths: words straddle bands
    head = fits.Header()
    head["IMAGETYP"] = "LIGHT"
    head["FLATNORM"] = (1.2345678912345, "a float set at the end")
    head["NCOSMIC"] = (17, "set at the end")
    head.add_history("sha256 " + "a" * 64)
    _astropy_file(tmp_path / "ref.fits", head, [("SCI", sci), ("ERR", err), ("MASK", mask)])
    early = head.copy()
    early["FLATNORM"], early["NCOSMIC"] = 1.0, 0
    unit = (("BUNIT", "electron"),)
    out = StreamedFits(
        tmp_path / "s.fits",
        [
            ImageSpec(early),
            ImageSpec(early, np.float32, shape, "SCI", unit),
            ImageSpec(fits.Header(), np.float32, shape, "ERR", unit),
            ImageSpec(fits.Header(), np.uint8, shape, "MASK", unit),
        ],
        checksum_comment="astropipe",
    )
    for r0 in reversed(range(0, shape[0], 5)):  # any order, any band height
        for index, data in ((1, sci), (2, err), (3, mask)):
            out.plane(index).write(r0, data[r0 : r0 + 5])
    assert np.array_equal(out.plane(3).read(0, shape[0]), mask)
    late = {"FLATNORM": 1.2345678912345, "NCOSMIC": 17}
    out.finish({0: late, 1: late})
    assert (tmp_path / "s.fits").read_bytes() == (tmp_path / "ref.fits").read_bytes()
    with fits.open(tmp_path / "s.fits", checksum=True) as hdul:  # astropy verifies the sums
        assert hdul["MASK"].data.tobytes() == mask.tobytes()


def test_a_strip_of_columns_is_read_without_the_whole_rows(tmp_path, monkeypatch):
    data = np.arange(600 * 500, dtype=np.uint16).reshape(600, 500)
    fits.PrimaryHDU(data).writeto(tmp_path / "f.fits")
    _, layout = fitsio.read_primary_header(tmp_path / "f.fits")
    monkeypatch.setattr(fitsio, "_CHUNK_BYTES", 20_000)  # 20 rows a read
    tracemalloc.start()
    strip = fitsio.read_region(tmp_path / "f.fits", hdu=0, layout=layout, rows=slice(0, 600),
                               cols=slice(480, 496))  # fmt: skip
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.array_equal(strip, data[:, 480:496].astype(np.float64))
    # the whole frame would be 600 kB stored (+ 2.4 MB as float64); the strip is 77 kB
    assert peak < 200_000, peak


# --- exact statistics over bands -------------------------------------------------------------


def _bands(a: np.ndarray, rows: int):
    return lambda: (a[i : i + rows] for i in range(0, a.shape[0], rows))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(8))
def test_exact_median_equals_numpy(dtype, seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 60)), int(rng.integers(1, 60)))
    kind = seed % 4
    if kind == 0:  # a narrow distribution: one 16-bit prefix holds most values
        a = rng.normal(21000, 150, shape)
    elif kind == 1:  # many ties
        a = np.rint(rng.normal(1000, 3, shape))
    elif kind == 2:  # both signs, many decades
        a = rng.lognormal(0, 8, shape) * rng.choice([-1, 1], shape)
    else:  # NaN and inf are left out, as the stage does before np.median
        a = rng.normal(1, 0.01, shape)
        a[rng.random(shape) < 0.2] = np.nan
        a[rng.random(shape) < 0.05] = np.inf
    x = a.astype(dtype)
    finite = x[np.isfinite(x)]
    want = float(np.median(finite)) if finite.size else None
    for rows in (1, 7, shape[0]):
        for most in (1, 50, 1 << 20):  # collect early, late, or select every bit
            got = exact_median(_bands(x, rows), dtype=dtype, max_candidates=most)
            assert got == want, (rows, most, got, want)


def test_exact_median_of_even_and_odd_counts_and_nothing():
    # even count: the mean of the two middle values, in float32 for float32 (as np.median)
    x = np.array([[1.0, 2.0, 4.0, 100.0]], dtype=np.float32)
    assert exact_median(_bands(x, 1), dtype=np.float32) == 3.0
    x = np.array([[16777216.0, 16777218.0, 1.0, 1e9]], dtype=np.float32)
    assert exact_median(_bands(x, 1), dtype=np.float32) == float(np.median(x))
    assert exact_median(_bands(np.array([[5.0, np.nan, 1.0]]), 1), dtype=np.float64) == 3.0
    assert exact_median(_bands(np.array([[9.0, 1.0, 5.0]]), 1), dtype=np.float64) == 5.0
    assert exact_median(_bands(np.full((2, 2), np.nan), 1), dtype=np.float64) is None


@pytest.mark.parametrize("shape", [(2048, 2048), (1000, 999), (3, 100_000), (5, 7)])
def test_banded_mean_equals_numpy_mean(shape):
    a = np.random.default_rng(1).lognormal(0, 6, shape).astype(np.float32)
    want = float(np.mean(a, dtype=np.float64))
    for rows in (1, 3, 17, shape[0]):
        assert numpy_mean((a[i : i + rows] for i in range(0, shape[0], rows)), a.size) == want


# --- outputs do not depend on the memory limit -----------------------------------------------


@pytest.mark.slow
def test_banded_and_tiled_cosmics_equal_the_whole_frame():
    """Bands of rows and tiles of columns (each with the cosmics margin) give the mask of one
    whole-frame call, and the in-memory planes equal the streamed ones."""
    cfg = CalibrationConfig()
    plan = stage.plan_from_params(cfg)[0]
    built = build_masters(plan, cfg, tile_rows=64, workers=1)
    sp = plan.science[0]
    kw = dict(bias=built[sp.bias], flat=built[sp.flat], dark=built[sp.dark])
    whole = calibrate_frame(sp.frame, cfg, **kw)
    tiled = calibrate_frame(sp.frame, cfg, band_rows=41, tile_cols=70, **kw)
    assert whole.cosmic_pixels > 20
    for plane in ("sci", "err", "mask"):
        assert getattr(tiled, plane).tobytes() == getattr(whole, plane).tobytes(), plane
    assert tiled.counts == whole.counts


def test_cosmic_ray_child_writes_the_same_file_as_in_process(tmp_path):
    """The cosmic-ray pass run in child processes (replaced every 2 bands, reading the planes
    from the file being written) gives the same file as in this process, and the mask of one
    whole-frame call."""
    cfg = CalibrationConfig()
    plan = stage.plan_from_params(cfg)[0]
    built = build_masters(plan, cfg, tile_rows=64, workers=1)
    sp = plan.science[0]
    masters = dict(bias=built[sp.bias], flat=built[sp.flat], dark=built[sp.dark])
    kw = dict(masters, masters={"bias": ("b", "0" * 64)}, band_rows=41, tile_cols=70)
    here = write_science(sp.frame, cfg, tmp_path / "here.fits", **kw)
    calls = []
    real = science.run_in_child

    def spy(spec, bands, on_band, *, tasks_per_child):
        calls.append((len(bands), tasks_per_child))
        real(spec, bands, on_band, tasks_per_child=tasks_per_child)

    science.run_in_child = spy
    try:
        child = write_science(
            sp.frame, cfg, tmp_path / "child.fits", cr_band_rows=57, cr_tasks_per_child=2, **kw
        )
    finally:
        science.run_in_child = real
    assert calls == [(5, 2)]  # 256 rows in bands of 57: three children
    assert here.cosmic_pixels == child.cosmic_pixels > 20
    assert (tmp_path / "here.fits").read_bytes() == (tmp_path / "child.fits").read_bytes()
    whole = calibrate_frame(sp.frame, cfg, **masters)
    assert child.mask.tobytes() == whole.mask.tobytes()


def test_science_bands_at_16k_leave_out_the_start_footprint_not_the_rss():
    """At 16k x 16k and 512 MB with a 150 MB start footprint: calibration bands of 172 rows,
    cosmic-ray bands of 454 rows (taller: 16 bytes a pixel of rows, not 128), astroscrappy
    tiles of ~3.1k columns, and a child replaced every 4 bands; before, with the RSS after the
    masters (> 256 MB) taken off, both passes fell to 8-row bands."""
    cfg = CalibrationConfig.from_params({"calibration": {"memory_limit": "512MB"}})
    bands = stage.science_bands(cfg, (16384, 16384), 1, footprint=150 * 10**6)
    budget = 512 * 10**6 - 150 * 10**6
    assert bands.rows == budget // (128 * 16384) == 172
    assert bands.cr_rows == (budget - budget // 8) // 2 // (16 * 16384) - 2 * 75 == 454
    assert bands.cols is not None and 3000 < bands.cols < 3300
    assert bands.tasks_per_child == 4
    small = stage.science_bands(cfg, (256, 256), 1, footprint=150 * 10**6)
    assert small.tasks_per_child is None  # a small frame's leak stays under 32 MB: no child


def _small_night(tmp_path: Path, size: int) -> Path:
    night = simulate_night(tmp_path / "night", NightModel(ny=size, nx=size, n_stars=60))
    for name in ("sci_V_02.fits", "sci_R_01.fits", "sci_R_02.fits"):
        (night / name).unlink()
    for p in night.glob("flat_R_*.fits"):
        p.unlink()
    return night


def _run(night: Path, work: Path, monkeypatch, limit: str, **cal: object) -> dict[str, str]:
    work.mkdir()
    monkeypatch.chdir(work)
    params = {
        "calibration": {"inputs": {"path": str(night)}, "memory_limit": limit, **cal},
        "compute": {"workers": 1, "memory_limit": "8GB"},
    }
    stage.run(params)
    out = work / "data/interim/calibration"
    files = sorted(out.glob("*/*.fits")) + [work / "reports/metrics/calibrate_images.json"]
    return {str(p.relative_to(work)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.mark.slow
def test_outputs_are_byte_identical_at_24mb_and_whole_frame(tmp_path, monkeypatch):
    """A 1.5k x 1.5k night calibrated with memory_limit=24MB (bands of a few rows, astroscrappy on
    tiles of a few hundred columns) writes the same bytes as with 8GB (every pass on the whole
    frame at once): masters, the science frame and the metrics."""
    night = _small_night(tmp_path, 1536)
    cosmics = {"niter": 1}  # a margin of 27 rows, not 79: 8-row bands stay affordable
    small = _run(night, tmp_path / "small", monkeypatch, "24MB", cosmics=cosmics)
    large = _run(night, tmp_path / "large", monkeypatch, "8GB", cosmics=cosmics)
    assert len(small) == 5 and small == large


@pytest.mark.slow
def test_traced_memory_stays_under_the_limit_on_a_larger_frame(tmp_path, monkeypatch):
    """Peak numpy allocations (tracemalloc) of a 1k x 1k night at memory_limit=12MB: every
    whole-frame plane is 4-8 MB and the stage touches dozens of them (the code before this test
    held 10 bytes a pixel for each combined master plus a float64 flat and its median copy, and
    the whole science planes: over 40 MB); bands keep the peak under the limit."""
    night = _small_night(tmp_path, 1024)
    cosmics = {"niter": 1}  # a narrow margin keeps the tiny bands affordable
    tracemalloc.start()
    try:
        _run(night, tmp_path / "work", monkeypatch, "12MB", cosmics=cosmics)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    frame = 1024 * 1024 * 8  # one float64 plane
    assert peak < 12 * 10**6, f"peak traced {peak / 1e6:.1f} MB"
    assert peak < 1.5 * frame
