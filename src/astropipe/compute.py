"""Where work that grows with the data runs: the ``compute`` config group.

Two entry points, one configuration (``synchronous``, ``threads``, ``processes``, or
``distributed`` — an existing dask cluster at ``compute.address``; astropipe never starts one
behind a user's back):

- :func:`workers` gives a :class:`Workers` pool whose :meth:`Workers.map` streams results back
  **in input order** with a bounded number of tasks in flight. Stages split their work into
  independent tasks (a batch of packets, a file, a group of objects, a time step) and merge
  the results in that order, so outputs are byte-identical whatever the scheduler and the
  number of workers. ``distributed`` runs the tasks on the cluster through
  :meth:`distributed.Client.get_executor`; ``threads`` and ``processes`` are the standard
  library pools that dask's local schedulers are built on.
- :func:`scheduler` sets dask's scheduler for a ``with`` block, for code that builds dask
  graphs (``dask.compute``, dask arrays).

Tasks must be module-level functions with picklable arguments and must name files by
absolute path: a cluster's workers run in other processes, other working directories and
possibly on other machines (which must see the same paths, e.g. a shared filesystem).

Example
-------
>>> cfg = ComputeConfig(scheduler="threads", workers=2)
>>> with workers(cfg) as pool:
...     list(pool.map(abs, [-3, 1, -2]))
[3, 1, 2]
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

from astropipe.configtypes import MemorySize, PositiveInt, from_mapping
from astropipe.errors import ConfigError

__all__ = [
    "ComputeConfig",
    "Workers",
    "workers",
    "scheduler",
    "parse_bytes",
    "memory_budget",
    "CONNECT_TIMEOUT",
]

T = TypeVar("T")
R = TypeVar("R")

#: Seconds to wait for the scheduler at ``compute.address`` before giving up.
CONNECT_TIMEOUT = 20.0

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


class _InlineExecutor(Executor):
    """``synchronous``: run each task at submission, in this thread (errors kept in the future)."""

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        future: Future[R] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # re-raised by result(), in input order
            future.set_exception(exc)
        return future


@dataclass
class Workers:
    """A pool of workers from :func:`workers`.

    Attributes
    ----------
    executor
        The :class:`concurrent.futures.Executor` the tasks go to.
    slots
        How many tasks run at once (threads or processes here, worker threads of a cluster).
    kind
        The ``compute.scheduler`` it was made for.
    client
        The :class:`distributed.Client` when ``kind`` is ``distributed``, else None.
    """

    executor: Executor
    slots: int
    kind: str
    client: Any = None

    @contextlib.contextmanager
    def dask(self) -> Iterator[None]:
        """Run dask graphs computed in the ``with`` block on this pool's workers.

        Under ``processes`` dask would otherwise start (and import into) a new process pool for
        every ``compute`` call; under ``distributed`` this reuses the pool's connection.
        """
        import dask

        if self.kind == "distributed":
            settings: dict[str, Any] = {"scheduler": self.client}
        elif self.kind == "synchronous":
            settings = {"scheduler": "synchronous"}
        else:
            settings = {"scheduler": self.kind, "pool": self.executor}
        with dask.config.set(**settings):
            yield

    def map(
        self,
        fn: Callable[..., R],
        items: Iterable[T],
        *,
        window: int | None = None,
        **kwargs: Any,
    ) -> Iterator[R]:
        """Yield ``fn(item, **kwargs)`` for every item, in the order of ``items``.

        At most ``window`` tasks (default ``2 × slots``) are submitted and not yet yielded,
        which bounds memory however long ``items`` is (it is consumed lazily). The first
        failing task's exception is raised when its turn comes; the call returns only once every
        submitted task has ended (local pools cancel those not yet started; a cluster's are
        waited for, since cancelling one there does not stop it), so no task writes anything
        after a failed stage has cleaned up.
        """
        window = max(1, window if window is not None else 2 * self.slots)
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(self.executor.submit(fn, item, **kwargs))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            if self.kind != "distributed":  # a cluster forgets a cancelled task, running or not
                for future in pending:
                    future.cancel()
            wait(pending)  # at most ``window`` tasks: none writes after the stage cleaned up


def _connect(address: str | None) -> Any:
    from distributed import Client

    try:
        return Client(address, set_as_default=False, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(
            f"compute.address={address}: no dask scheduler answered within "
            f"{CONNECT_TIMEOUT:g} s ({type(exc).__name__}: {exc}); start the cluster or fix "
            "compute.address (docs/cluster.md)."
        ) from exc


@contextlib.contextmanager
def workers(cfg: ComputeConfig) -> Iterator[Workers]:
    """A :class:`Workers` pool for the configured scheduler, closed when the block ends.

    ``synchronous`` runs every task in this thread; ``threads`` and ``processes`` start
    ``compute.workers`` threads or processes (started with dask's ``multiprocessing.context``,
    ``spawn`` by default, so no lock held by another thread is inherited); ``distributed``
    connects to the cluster at ``compute.address`` and uses all its worker threads.

    Raises
    ------
    ConfigError
        When ``distributed`` and no scheduler answers at ``compute.address``.
    """
    if cfg.scheduler == "synchronous":
        yield Workers(_InlineExecutor(), 1, cfg.scheduler)
        return
    if cfg.scheduler == "threads":
        with ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="astropipe") as pool:
            yield Workers(pool, cfg.workers, cfg.scheduler)
        return
    if cfg.scheduler == "processes":
        import dask

        context = multiprocessing.get_context(dask.config.get("multiprocessing.context", "spawn"))
        with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=context) as pool:
            yield Workers(pool, cfg.workers, cfg.scheduler)
        return
    client = _connect(cfg.address)
    try:
        slots = max(1, sum(client.nthreads().values()))
        with client.get_executor(pure=False) as executor:  # exit waits for its tasks
            yield Workers(executor, slots, cfg.scheduler, client)
    finally:
        client.close()


@contextlib.contextmanager
def scheduler(cfg: ComputeConfig) -> Iterator[None]:
    """Run the ``with`` block under the configured dask scheduler (for dask graphs)."""
    import dask

    if cfg.scheduler == "distributed":
        client = _connect(cfg.address)
        try:
            with dask.config.set(scheduler=client):
                yield
        finally:
            client.close()
        return
    kwargs: dict[str, Any] = {"scheduler": cfg.scheduler}
    if cfg.scheduler in ("threads", "processes"):
        kwargs["num_workers"] = cfg.workers
    with dask.config.set(**kwargs):
        yield
