"""The DVC stages in dvc.yaml order, and ``dvc repro <stage>`` as one call that fails in a line.

Each stage is reproduced with ``dvc repro <stage>``, so DVC still decides what is up to date
(a stage whose deps and params are unchanged does nothing) and records ``dvc.lock``; an
orchestrator only adds scheduling, retries and a record of the runs around it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from astropipe.errors import AstropipeError

__all__ = ["StageFailed", "stage_names", "repro_stage"]


class StageFailed(AstropipeError, RuntimeError):
    """``dvc repro <stage>`` exited non-zero (or ``dvc`` could not be run)."""


def _dvc(
    args: list[str], *, repo: Path, dvc: str, env: Mapping[str, str] | None, timeout: float | None
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [dvc, *args],
            cwd=repo,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise StageFailed(
            f"{dvc}: not found; activate .venv (source .venv/bin/activate) or pass dvc=<path>."
        ) from None
    except subprocess.TimeoutExpired:
        raise StageFailed(f"dvc {' '.join(args)}: no answer within {timeout} s.") from None


def _last_line(text: str) -> str:
    """The stage's own one-line ``error: ...`` if it printed one, else DVC's last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    ours = [ln for ln in lines if ln.startswith("error: ")]
    return (ours or lines or ["(no output)"])[-1]


def stage_names(
    repo: str | os.PathLike[str] = ".",
    *,
    dvc: str = "dvc",
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """The pipeline's stages in dvc.yaml order, ``foreach`` stages expanded (``fits_to_zarr@lwa``).

    Raises
    ------
    StageFailed
        ``dvc stage list`` failed (not a DVC repository, a broken dvc.yaml).
    """
    proc = _dvc(["stage", "list", "--name-only"], repo=Path(repo), dvc=dvc, env=env, timeout=120)
    if proc.returncode != 0:
        raise StageFailed(f"dvc stage list in {repo}: {_last_line(proc.stderr or proc.stdout)}")
    return [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]


def repro_stage(
    stage: str,
    repo: str | os.PathLike[str] = ".",
    *,
    dvc: str = "dvc",
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> str:
    """Run ``dvc repro <stage>`` in ``repo``; return DVC's output.

    Raises
    ------
    StageFailed
        One line: the stage and DVC's last error line (the stage's own ``error: ...``).
    """
    proc = _dvc(["repro", stage], repo=Path(repo), dvc=dvc, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise StageFailed(
            f"dvc repro {stage} failed (exit {proc.returncode}): "
            f"{_last_line(proc.stderr or proc.stdout)}"
        )
    return proc.stdout
