"""Known answers on the simulated night: injected sky recovered within noise, cosmic-ray recall."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from astropipe.calibration.config import CalibrationConfig
from astropipe.calibration.frames import discover
from astropipe.calibration.masters import build_masters
from astropipe.calibration.plan import make_plan
from astropipe.calibration.science import calibrate_frame
from astropipe.calibration.simulate import NightModel, flat_response, sky_model

NIGHT = Path(__file__).resolve().parents[1] / "data/sample/ccd/night"
TRUTH = json.loads((NIGHT / "truth.json").read_text())


@pytest.fixture(scope="module")
def calibrated():
    cfg = CalibrationConfig()
    frames, _ = discover(NIGHT)
    plan = make_plan(frames, directory=NIGHT)
    built = build_masters(plan, cfg, tile_rows=64)
    return {
        sp.frame.name: calibrate_frame(
            sp.frame, cfg, bias=built[sp.bias], flat=built[sp.flat], dark=built[sp.dark]
        )
        for sp in plan.science
    }


def _truth_image(name: str) -> np.ndarray:
    """Noise-free expected SCI: sky + stars times the median flat response.

    Flat-fielding divides by the flat normalised to its median, so a calibrated frame is in
    "electrons a median pixel collects": the model above the vignetting times median(response).
    """
    model = NightModel()
    t = TRUTH["frames"][name]
    return sky_model(model, t["filter"], t["exptime"]) * np.median(
        flat_response(model, t["filter"])
    )


def _cr_truth(name: str, shape: tuple[int, int]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    mask = np.zeros(shape, dtype=bool)
    peaks = []
    for hit in TRUTH["frames"][name]["cosmic_rays"]:
        pix = np.array(hit["pixels"])
        mask[pix[:, 0], pix[:, 1]] = True
        peaks.append(tuple(pix[int(np.argmax(hit["electrons"]))]))
    return mask, peaks


def test_calibrated_sky_recovers_injected_sky_within_noise(calibrated):
    for name, cal in calibrated.items():
        truth = _truth_image(name)
        cr, _ = _cr_truth(name, cal.sci.shape)
        good = (cal.mask == 0) & ~ndimage.binary_dilation(cr, np.ones((3, 3), bool))
        sky = good & (truth < truth.min() + 1.0)  # star-free pixels
        n = int(sky.sum())
        assert n > 40_000
        expected = float(truth.min())
        measured = float(np.mean(cal.sci[sky], dtype=np.float64))
        error_of_mean = float(np.sqrt(np.mean(cal.err[sky].astype(np.float64) ** 2) / n))
        # The injected sky (480 e- in V, 720 e- in R, times the median response) comes back
        # within 5 standard errors of the mean of ~60 000 pixels (about 0.5 e-).
        assert abs(measured - expected) < 5 * error_of_mean + 0.002 * expected, (
            name,
            measured,
            expected,
        )


def test_err_plane_matches_the_scatter_about_the_truth(calibrated):
    for name, cal in calibrated.items():
        truth = _truth_image(name)
        cr, _ = _cr_truth(name, cal.sci.shape)
        good = (cal.mask == 0) & ~ndimage.binary_dilation(cr, np.ones((3, 3), bool))
        pull = ((cal.sci - truth) / cal.err)[good]
        assert abs(pull.mean()) < 0.05, name
        assert 0.95 < pull.std() < 1.05, (name, pull.std())


def test_cosmic_ray_recall_and_false_positives(calibrated):
    hits = found = false_pos = 0
    for name, cal in calibrated.items():
        cr, peaks = _cr_truth(name, cal.sci.shape)
        flagged = (cal.mask & 4) > 0
        hits += len(peaks)
        found += sum(bool(flagged[p]) for p in peaks)
        near = ndimage.binary_dilation(cr, np.ones((3, 3), bool))
        fp = int((flagged & ~near).sum())
        false_pos += fp
        hit = sum(bool(flagged[p]) for p in peaks)
        print(f"{name}: {hit}/{len(peaks)} hits, {fp} false-positive pixels")
    recall = found / hits
    print(
        f"cosmic-ray recall {recall:.3f} on {hits} injected hits; {false_pos} false-positive pixels"
    )
    assert recall >= 0.95
    # False positives: flagged pixels farther than one pixel from any injected hit, out of
    # 4 x 65 536 pixels; bounded at 0.01 %.
    assert false_pos <= 0.0001 * 4 * 256 * 256


def test_saturated_star_and_dead_pixels_are_masked(calibrated):
    model = NightModel()
    for cal in calibrated.values():
        assert (cal.mask & 1).sum() >= 1
        dead = (
            np.abs(
                flat_response(model, cal.frame.filter)
                / np.median(flat_response(model, cal.frame.filter))
            )
            < 0.5
        )
        np.testing.assert_array_equal((cal.mask & 2) > 0, dead)
