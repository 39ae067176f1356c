"""The pipeline's output bytes do not depend on the CPU's SIMD level.

numpy picks its kernels at import time from the CPU (baseline, then dispatch targets such as
``X86_V3`` = AVX2 and ``X86_V4`` = AVX-512 on x86-64). Transcendental kernels (pow, exp, log,
arctan2) differ in their last bits between targets, so a hashed output built from them differs
between a laptop and a CI runner. ``NPY_DISABLE_CPU_FEATURES`` switches targets off, which lets
one machine play every lesser CPU: this test runs the whole pipeline (``dvc repro`` in a fresh
copy of the repository) once per level this machine has, down to the build's baseline, and
requires identical output hashes everywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from repo_copy import copy_repo, lock_differences, out_hashes, run_dvc

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def simd_levels() -> list[tuple[str, str]]:
    """``(name, NPY_DISABLE_CPU_FEATURES value)`` from the best level down to the baseline.

    A level is "every dispatch target this CPU has up to and including X"; reaching it means
    disabling all targets above X (disabling X alone leaves its supersets enabled).
    """
    from numpy._core import _multiarray_umath as umath

    baseline = "+".join(umath.__cpu_baseline__) or "baseline"
    present = [t for t in umath.__cpu_dispatch__ if umath.__cpu_features__.get(t)]
    levels = []
    for k in range(len(present), -1, -1):
        name = present[k - 1] if k else f"baseline ({baseline})"
        levels.append((name, " ".join(present[k:])))
    return levels


def test_levels_cover_baseline() -> None:
    levels = simd_levels()
    assert levels[0][1] == "" and levels[-1][0].startswith("baseline")
    # Each level disables strictly more than the one before it.
    sizes = [len(disabled.split()) for _, disabled in levels]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)


LEVELS = simd_levels()[1:]
_PROBE = (
    "import os; from numpy._core import _multiarray_umath as u; "
    "print(*(u.__cpu_features__[t] for t in os.environ['NPY_DISABLE_CPU_FEATURES'].split()))"
)


@pytest.mark.skipif(not LEVELS, reason="numpy has no dispatch targets on this CPU")
@pytest.mark.parametrize(("name", "disabled"), LEVELS, ids=[n for n, _ in LEVELS])
def test_outputs_identical_at_lower_simd_level(
    name: str, disabled: str, reference_lock: dict, tmp_path: Path
) -> None:
    repo = copy_repo(tmp_path / "simd")
    env = {"NPY_DISABLE_CPU_FEATURES": disabled}
    # numpy really runs without the targets (an unknown name would only warn).
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert probe.stdout.split() == ["False"] * len(disabled.split()), probe.stderr
    run_dvc(repo, "repro", env=env)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert out_hashes(lock) == out_hashes(reference_lock), (
        f"outputs at SIMD level {name} (NPY_DISABLE_CPU_FEATURES={disabled!r}) differ from the "
        f"run with every target: {lock_differences(reference_lock, lock)}; some hashed number "
        "comes from a libm/SIMD-dependent function (pow, exp, log, arctan2...): compute it from "
        "+ - * / sqrt, see docs/reproducibility.md."
    )
