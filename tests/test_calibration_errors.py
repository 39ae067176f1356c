"""The ERR plane of calibrated frames against the scatter of simulated frames with known truth."""

from __future__ import annotations

import numpy as np
import pytest

from astropipe.calibration.calibrate import science_error
from astropipe.calibration.config import CalibrationConfig
from astropipe.calibration.frames import discover
from astropipe.calibration.masters import build_masters
from astropipe.calibration.plan import make_plan
from astropipe.calibration.science import calibrate_frame
from astropipe.calibration.simulate import NightModel, _fixed, flat_response, sky_model

#: Many hot pixels (1-5 e-/s, 120-600 e- in a 120 s science frame) on a faint sky (60 e-), so
#: dark-current shot noise dominates their variance.
MODEL = NightModel(n_hot=4000, sky_rate={"V": 0.5, "R": 0.5}, n_stars=3, cr_per_science=0)


@pytest.fixture(scope="module")
def hot_night(tmp_path_factory):
    from astropipe.calibration.simulate import simulate_night

    directory = simulate_night(tmp_path_factory.mktemp("hot_night"), MODEL)
    cfg = CalibrationConfig.from_params({"calibration": {"cosmics": {"enabled": False}}})
    frames, _ = discover(directory)
    plan = make_plan(frames, directory=directory)
    built = build_masters(plan, cfg, tile_rows=64, workers=1)
    return [
        (
            calibrate_frame(
                sp.frame, cfg, bias=built[sp.bias], flat=built[sp.flat], dark=built[sp.dark]
            ),
            (built[sp.bias], built[sp.dark], built[sp.flat]),
        )
        for sp in plan.science
    ]


def test_err_includes_dark_shot_noise_on_hot_pixels(hot_night):
    """Regression: ERR used the dark-subtracted signal, leaving out the dark current's shot
    noise; hot pixels got pulls of width ~2.2 here. The Poisson term must use the collected
    charge (signal + dark · t)."""
    hot = _fixed(MODEL)["hot"] > 0
    pulls, old_pulls = [], []
    for cal, (bias, dark, flat) in hot_night:
        filt, t = cal.frame.filter, cal.frame.exptime
        response = flat_response(MODEL, filt)
        truth = sky_model(MODEL, filt, t) * np.median(response)
        good = hot & (cal.mask == 0) & (truth < truth.min() + 1.0)  # no stars, no bad flat
        resid = (cal.sci - truth)[good]
        pulls.append(resid / cal.err[good])
        # The old formula: Poisson term on the dark-subtracted signal (no ``dark=``).
        old_err = science_error(
            cal.sci.astype(np.float64) * np.where(flat.data > 0, flat.data, 1.0),
            read_noise_e=cal.read_noise,
            flat=flat.data,
            bias_err=bias.err,
            dark_err=dark.err,
            exptime=t,
            flat_err=flat.err,
        )
        old_pulls.append(resid / old_err[good])
    pull = np.concatenate(pulls)
    old = np.concatenate(old_pulls)
    print(f"hot-pixel pulls: n={pull.size} std {pull.std():.3f} (old formula {old.std():.3f})")
    assert pull.size > 10_000  # 4 frames x ~4 000 hot pixels
    assert abs(pull.mean()) < 0.05
    assert 0.9 < pull.std() < 1.1, pull.std()
    assert old.std() > 1.3, old.std()  # the old ERR is far too small on hot pixels


def test_err_on_ordinary_pixels_unchanged_by_the_dark_term(hot_night):
    """Away from hot pixels the dark current (0.02 e-/s) adds ~2.4 e-: pulls stay of unit width."""
    hot = _fixed(MODEL)["hot"] > 0
    pulls = []
    for cal, _masters in hot_night:
        response = flat_response(MODEL, cal.frame.filter)
        truth = sky_model(MODEL, cal.frame.filter, cal.frame.exptime) * np.median(response)
        good = ~hot & (cal.mask == 0) & (truth < truth.min() + 1.0)
        pulls.append(((cal.sci - truth) / cal.err)[good])
    pull = np.concatenate(pulls)
    print(f"ordinary-pixel pulls: n={pull.size} std {pull.std():.3f}")
    assert 0.95 < pull.std() < 1.05, pull.std()
