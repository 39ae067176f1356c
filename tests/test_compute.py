"""``astropipe.compute``: the ordered, bounded map on every scheduler, and its errors."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from astropipe import compute
from astropipe.compute import ComputeConfig, workers
from astropipe.errors import ConfigError


def _slow_square(x: int) -> tuple[int, int]:
    """Later items finish first: results must still come back in input order."""
    time.sleep(0.02 * (5 - x % 5))
    return x * x, os.getpid()


def _write_late(x: int, where: str) -> int:
    """Task 0 fails at once; the others write a file after a while (as a stage's tasks do)."""
    if x == 0:
        raise ValueError("task 0 failed")
    time.sleep(0.5)
    Path(where, f"{x}.out").write_text(str(x))
    return x


def _fail_on(x: int, bad: int) -> int:
    if x == bad:
        raise ValueError(f"item {x} is bad")
    return x


CONFIGS = [
    ComputeConfig(scheduler="synchronous", workers=1),
    ComputeConfig(scheduler="threads", workers=3),
    ComputeConfig(scheduler="processes", workers=2),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=[c.scheduler for c in CONFIGS])
def test_map_keeps_input_order(cfg: ComputeConfig) -> None:
    with workers(cfg) as pool:
        results = list(pool.map(_slow_square, range(12)))
    assert [r for r, _ in results] == [x * x for x in range(12)]
    pids = {pid for _, pid in results}
    if cfg.scheduler == "processes":
        assert os.getpid() not in pids and 1 <= len(pids) <= 2
    else:
        assert pids == {os.getpid()}


def test_map_on_a_cluster_keeps_order_and_runs_elsewhere(dask_cluster: str) -> None:
    cfg = ComputeConfig(scheduler="distributed", address=dask_cluster)
    with workers(cfg) as pool:
        assert pool.slots == 2
        results = list(pool.map(_slow_square, range(10)))
    assert [r for r, _ in results] == [x * x for x in range(10)]
    assert os.getpid() not in {pid for _, pid in results}


def test_scheduler_context_sends_dask_graphs_to_the_cluster(dask_cluster: str) -> None:
    import dask
    import dask.array as da

    with compute.scheduler(ComputeConfig(scheduler="distributed", address=dask_cluster)):
        client = dask.config.get("scheduler")
        assert client.scheduler.address == dask_cluster
        assert int(da.arange(100, chunks=10).sum().compute()) == 4950
    assert dask.config.get("scheduler", None) != client


def test_map_consumes_items_lazily_within_the_window() -> None:
    pulled: list[int] = []
    gate = threading.Event()

    def items() -> Iterator[int]:
        for x in range(100):
            pulled.append(x)
            yield x

    def wait(x: int) -> int:
        gate.wait(5)
        return x

    with workers(ComputeConfig(scheduler="threads", workers=2)) as pool:
        stream = pool.map(wait, items(), window=4)
        gate.set()
        first = next(stream)
        assert first == 0 and len(pulled) == 4  # the window, not the whole input
        assert list(stream) == list(range(1, 100))


@pytest.mark.parametrize("cfg", CONFIGS, ids=[c.scheduler for c in CONFIGS])
def test_first_failure_is_raised_in_its_turn(cfg: ComputeConfig) -> None:
    seen: list[int] = []
    with workers(cfg) as pool, pytest.raises(ValueError, match="^item 3 is bad$"):
        for x in pool.map(_fail_on, range(10), bad=3):
            seen.append(x)
    assert seen == [0, 1, 2]


def test_no_scheduler_at_the_address_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compute, "CONNECT_TIMEOUT", 1.0)
    cfg = ComputeConfig(scheduler="distributed", address="tcp://127.0.0.1:9")
    with pytest.raises(ConfigError, match=r"^compute.address=tcp://127.0.0.1:9: no dask scheduler"):
        with workers(cfg):
            pass


def test_distributed_needs_an_address() -> None:
    with pytest.raises(ConfigError, match="^compute.address: required"):
        ComputeConfig.from_params({"compute": {"scheduler": "distributed"}})


def _config(kind: str, address: str) -> ComputeConfig:
    return ComputeConfig(
        scheduler=kind, workers=2, address=address if kind == "distributed" else None
    )


@pytest.mark.parametrize("kind", ["threads", "processes", "distributed"])
def test_a_failed_map_returns_only_after_its_running_tasks(
    kind: str, dask_cluster: str, tmp_path: Path
) -> None:
    """Nothing is written after the failure reaches the stage (which then cleans up)."""
    cfg = _config(kind, dask_cluster)
    with workers(cfg) as pool, pytest.raises(ValueError, match="^task 0 failed$"):
        list(pool.map(_write_late, range(6), where=str(tmp_path)))
    after_failure = sorted(p.name for p in tmp_path.iterdir())
    time.sleep(1.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == after_failure
    assert len(after_failure) < 5  # tasks not yet started were cancelled


@pytest.mark.parametrize("kind", ["synchronous", "threads", "processes", "distributed"])
def test_dask_graphs_run_on_the_pool(kind: str, dask_cluster: str) -> None:
    import dask
    import dask.array as da

    cfg = _config(kind, dask_cluster)
    with workers(cfg) as pool, pool.dask():
        assert int(da.arange(1000, chunks=100).sum().compute()) == 499500
        if kind in ("threads", "processes"):
            assert dask.config.get("pool") is pool.executor
        if kind == "distributed":
            assert dask.config.get("scheduler") is pool.client
