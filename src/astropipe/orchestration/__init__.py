"""Run the DVC stages one by one from an orchestrator (framework-independent core).

:func:`stage_names` and :func:`repro_stage` need only ``dvc``; the optional Prefect flow in
:mod:`astropipe.orchestration.prefect_flow` (``pip install astropipe[prefect]``) wraps them in
tasks with retries. Nothing here imports Prefect.
"""

from astropipe.orchestration.stages import StageFailed, repro_stage, stage_names

__all__ = ["StageFailed", "repro_stage", "stage_names"]
