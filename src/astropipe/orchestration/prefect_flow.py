"""Optional Prefect flow over the DVC stages: ``pip install astropipe[prefect]``.

One task per stage, in dvc.yaml order, each ``dvc repro <stage>`` with retries; DVC decides
what is up to date. Run it with ``python -m astropipe.orchestration.prefect_flow [repo]``, or
deploy :func:`pipeline` like any Prefect flow. This is the only module that imports Prefect.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from prefect import flow, task

from astropipe.orchestration.stages import repro_stage, stage_names

__all__ = ["pipeline", "repro"]


@task(name="dvc-repro", task_run_name="dvc repro {stage}")
def repro(stage: str, repo: str, dvc: str = "dvc") -> str:
    """``dvc repro <stage>`` as a Prefect task (retries are set per run by :func:`pipeline`)."""
    return repro_stage(stage, repo, dvc=dvc)


@flow(name="astropipe")
def pipeline(
    repo: str = ".",
    *,
    stages: Sequence[str] | None = None,
    retries: int = 2,
    retry_delay_seconds: float = 10.0,
    dvc: str = "dvc",
) -> list[str]:
    """Reproduce ``stages`` (default: every stage, in dvc.yaml order), one task each.

    Parameters
    ----------
    repo
        The repository (where dvc.yaml is).
    stages
        Stage names as ``dvc stage list`` prints them; default all.
    retries, retry_delay_seconds
        Per stage: a failed ``dvc repro`` (a flaky live service) is retried this many times.
    dvc
        The ``dvc`` executable.

    Returns
    -------
    list of str
        The stages run, in order. A stage that still fails after its retries fails the flow.
    """
    names = list(stages) if stages is not None else stage_names(repo, dvc=dvc)
    step = repro.with_options(retries=retries, retry_delay_seconds=retry_delay_seconds)
    for name in names:
        step(name, repo, dvc)
    return names


if __name__ == "__main__":
    pipeline(sys.argv[1] if len(sys.argv) > 1 else ".")
