"""Dask scheduler selection from the ``compute`` config group.

Work that grows with the data runs inside :func:`scheduler`, which sets dask's scheduler for the
duration of a ``with`` block: ``synchronous``, ``threads``, ``processes``, or ``distributed``
(connecting to an existing cluster at ``compute.address``; astropipe never starts one behind a
user's back).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from astropipe.configtypes import MemorySize, PositiveInt, from_mapping
from astropipe.errors import ConfigError

__all__ = ["ComputeConfig", "scheduler", "parse_bytes", "memory_budget"]

Scheduler = Literal["synchronous", "threads", "processes", "distributed"]
SCHEDULERS: tuple[str, ...] = get_args(Scheduler)


@dataclass(frozen=True)
class ComputeConfig:
    """The ``compute`` section of params.yaml."""

    scheduler: Scheduler = "threads"
    address: str | None = None
    workers: PositiveInt = 2
    memory_limit: MemorySize = "4GB"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ComputeConfig:
        """Build from the full params mapping (its ``compute`` section, defaults if absent)."""
        cfg = from_mapping(cls, params.get("compute", {}) or {}, where="compute")
        if cfg.scheduler == "distributed" and not cfg.address:
            raise ConfigError(
                "compute.address: required when compute.scheduler=distributed; "
                "give the scheduler address of a running cluster, e.g. tcp://host:8786."
            )
        return cfg

    @property
    def memory_bytes(self) -> int:
        """``memory_limit`` in bytes."""
        return parse_bytes(self.memory_limit)


def parse_bytes(text: str | int) -> int:
    """Parse ``"4GB"``, ``"512 MiB"`` or an integer into bytes (dask's rules)."""
    from dask.utils import parse_bytes as _parse

    try:
        return int(_parse(text))
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"memory size {text!r} is not understood; write e.g. 4GB or 512MiB."
        ) from exc


def memory_budget(compute: ComputeConfig, limit: str | None = None) -> int:
    """Bytes a stage may use: its own ``limit`` if given, else ``compute.memory_limit``.

    ``compute.memory_limit`` is the budget of one run; a stage's own limit (e.g.
    ``calibration.memory_limit``) may narrow it, never exceed it.

    Raises
    ------
    ConfigError
        When ``limit`` is larger than ``compute.memory_limit``.
    """
    total = parse_bytes(compute.memory_limit)
    if limit is None:
        return total
    own = parse_bytes(limit)
    if own > total:
        raise ConfigError(
            f"memory limit {limit} exceeds compute.memory_limit={compute.memory_limit}; "
            "lower the stage's limit or raise compute.memory_limit."
        )
    return own


@contextlib.contextmanager
def scheduler(cfg: ComputeConfig) -> Iterator[None]:
    """Run the ``with`` block under the configured dask scheduler."""
    import dask

    if cfg.scheduler == "distributed":
        from distributed import Client

        with Client(cfg.address, set_as_default=True):
            yield
        return
    kwargs: dict[str, Any] = {"scheduler": cfg.scheduler}
    if cfg.scheduler in ("threads", "processes"):
        kwargs["num_workers"] = cfg.workers
    with dask.config.set(**kwargs):
        yield
