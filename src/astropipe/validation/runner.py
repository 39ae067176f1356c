"""Run contracts on tables: an ephemeral GX context, a pandas datasource, one batch per table.

Only the contract's columns are read from each Parquet file, so extra columns cost nothing. GX
results are reduced right here to plain, deterministic records (:class:`Outcome`): no run ids,
expectation ids, timestamps or data fingerprints survive.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx  # noqa: E402  (after the telemetry switch)
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402

from astropipe.errors import InputFileError, MissingInputError  # noqa: E402
from astropipe.provenance import sha256_file  # noqa: E402
from astropipe.validation.suites import Contract, build_suite  # noqa: E402

__all__ = [
    "Outcome",
    "TableReport",
    "make_context",
    "load_table",
    "validate_frame",
    "validate_file",
    "Suite",
    "run_suite",
]

log = logging.getLogger(__name__)

_DATASOURCE = "astropipe"
#: How many offending values a failed expectation reports.
PARTIAL_COUNT = 5


@dataclass(frozen=True)
class Outcome:
    """The result of one expectation, reduced to deterministic plain data."""

    order: int
    expectation: str
    column: str | None
    rule: str
    success: bool
    observed: dict[str, Any]


@dataclass(frozen=True)
class TableReport:
    """All outcomes of one table's contract."""

    table: str
    path: str
    rows: int
    outcomes: tuple[Outcome, ...] = field(default_factory=tuple)

    @property
    def success(self) -> bool:
        """True when every expectation passed."""
        return all(o.success for o in self.outcomes)

    @property
    def failed(self) -> tuple[Outcome, ...]:
        """The failed outcomes, in contract order."""
        return tuple(o for o in self.outcomes if not o.success)


def make_context() -> Any:
    """Return an ephemeral GX data context (in memory, no files, no progress bars)."""
    # This GX module pins its own logger to INFO on import (it logs the temporary docs site of
    # every ephemeral context), so the package-level WARNING set in __init__ does not reach it.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.config.analytics_enabled = False  # also set by GX_ANALYTICS_ENABLED=false above
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def _batch_definition(context: Any, table: str) -> Any:
    try:
        source = context.data_sources.get(_DATASOURCE)
    except (KeyError, ValueError):
        source = context.data_sources.add_pandas(_DATASOURCE)
    try:
        asset = source.get_asset(table)
    except LookupError:
        asset = source.add_dataframe_asset(table)
    try:
        return asset.get_batch_definition("whole")
    except (KeyError, LookupError):
        return asset.add_batch_definition_whole_dataframe("whole")


def load_table(
    path: str | os.PathLike[str], contract: Contract, *, name: str | None = None
) -> pd.DataFrame:
    """Read the contract's columns (those present) of a Parquet file into pandas.

    ``name`` is what messages call the file (default: ``path``).
    """
    p = Path(path)
    shown = name if name is not None else str(p)
    if not p.is_file():
        raise MissingInputError(
            f"{shown}: file not found; run the stage that writes it (dvc repro)."
        )
    try:
        names = pq.read_schema(p).names
        columns = [c for c in contract.columns if c in names]
        return pq.read_table(p, columns=columns).to_pandas()
    except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        text = str(exc).replace(str(p), shown)
        raise InputFileError(
            f"{shown}: not a readable Parquet file ({text}); re-create it or fetch it with "
            "dvc pull."
        ) from exc


def _plain(value: Any) -> Any:
    """JSON-friendly, deterministic version of a GX observed value."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def _exception_message(info: Any) -> str | None:
    if not info:
        return None
    if "raised_exception" in info:
        return info.get("exception_message") if info.get("raised_exception") else None
    for entry in info.values():  # keyed by metric id when a metric failed
        if isinstance(entry, dict) and entry.get("raised_exception"):
            return str(entry.get("exception_message") or "exception").splitlines()[0]
    return None


def _observed(
    result: dict[str, Any], error: str | None, *, key: str | None = None
) -> dict[str, Any]:
    if error is not None:
        return {"error": error}
    out: dict[str, Any] = {}
    if "observed_value" in result:
        out["observed_value"] = _plain(result["observed_value"])
    if "unexpected_count" in result:
        out["element_count"] = _plain(result.get("element_count"))
        if "missing_count" in result:  # nulls, ignored by the expectation
            out["missing_count"] = _plain(result["missing_count"])
        out["unexpected_count"] = _plain(result["unexpected_count"])
        out["unexpected_percent"] = _plain(result.get("unexpected_percent"))
        if result["unexpected_count"]:
            partial = result.get("partial_unexpected_list") or []
            out["unexpected_examples"] = _plain(list(partial)[:PARTIAL_COUNT])
            rows = result.get("partial_unexpected_index_list") or []
            if key is not None and rows:
                out["unexpected_items"] = [str(row[key]) for row in rows[:PARTIAL_COUNT]]
    details = result.get("details")
    if details and "mismatched" in details:
        out["mismatched"] = _plain(details["mismatched"])
    return out


def _column_of(kwargs: dict[str, Any]) -> str | None:
    if kwargs.get("column") is not None:
        return str(kwargs["column"])
    if kwargs.get("column_list"):
        return ",".join(kwargs["column_list"])
    if kwargs.get("column_A") is not None:
        return f"{kwargs['column_A']},{kwargs['column_B']}"
    return None


def validate_frame(
    df: pd.DataFrame, contract: Contract, *, path: str, context: Any | None = None
) -> TableReport:
    """Validate a DataFrame against ``contract`` and reduce the GX result to a report."""
    context = context or make_context()
    batch = _batch_definition(context, contract.table).get_batch(batch_parameters={"dataframe": df})
    result_format: dict[str, Any] = {
        "result_format": "SUMMARY",
        "partial_unexpected_count": PARTIAL_COUNT,
    }
    if contract.key is not None:  # name the offending rows (files, cube steps) too
        result_format["unexpected_index_column_names"] = [contract.key]
    result = batch.validate(build_suite(contract), result_format=result_format)
    outcomes = []
    for r in result.results:
        cfg = r.expectation_config
        error = _exception_message(r.exception_info)
        outcomes.append(
            Outcome(
                order=int(cfg.meta["order"]),
                expectation=cfg.type,
                column=_column_of(cfg.kwargs),
                rule=str(cfg.meta["rule"]),
                success=bool(r.success) and error is None,
                observed=_observed(dict(r.result or {}), error, key=contract.key),
            )
        )
    outcomes.sort(key=lambda o: o.order)
    report = TableReport(contract.table, path, len(df), tuple(outcomes))
    log.debug(  # the stage logs it at info (a cluster worker's log never reaches its log)
        "%s: %d rows, %d/%d expectations passed",
        contract.table,
        report.rows,
        len(outcomes) - len(report.failed),
        len(outcomes),
    )
    return report


def validate_file(
    path: str | os.PathLike[str],
    contract: Contract,
    *,
    context: Any | None = None,
    read: str | os.PathLike[str] | None = None,
) -> TableReport:
    """Read ``path`` (the contract's columns) and validate it; ``path`` is reported as given.

    ``read`` is where the file is read when it differs from the name reported (an absolute
    path, for a task on a cluster worker).
    """
    df = load_table(path if read is None else read, contract, name=str(Path(path)))
    return validate_frame(df, contract, path=Path(path).as_posix(), context=context)


@dataclass(frozen=True)
class Suite:
    """One contract to run as a compute task (:func:`run_suite`) and the table it checks.

    The table is the first given of: ``frame`` (a summary table already built), ``build()``
    (a module-level callable, e.g. a :func:`functools.partial`, building it on the worker),
    or the Parquet file at ``read``. Every path is absolute: a cluster's workers run in
    another working directory. ``path`` is the name reported; ``digest`` a file whose
    SHA-256 the data docs record.
    """

    contract: Contract
    path: str
    read: str | None = None
    frame: pd.DataFrame | None = None
    build: Callable[[], pd.DataFrame] | None = None
    digest: str | None = None


_LOCAL = threading.local()


def _worker_context() -> Any:
    """This thread's own GX context, made on first use (a context is not picklable, and one
    context shared by threads running suites at once is not known to be safe)."""
    context = getattr(_LOCAL, "context", None)
    if context is None:
        context = _LOCAL.context = make_context()
    return context


def run_suite(suite: Suite, *, context: Any | None = None) -> tuple[TableReport, str | None]:
    """Validate one :class:`Suite` as a compute task (:meth:`astropipe.compute.Workers.map`).

    Parameters
    ----------
    suite
        The contract and its table.
    context
        A GX context to use (only in the caller's own thread); this thread's own otherwise.

    Returns
    -------
    tuple
        The report (plain data, so it may come back from another process) and the SHA-256 of
        ``suite.digest`` (None when not asked).
    """
    context = context or _worker_context()
    if suite.frame is not None:
        report = validate_frame(suite.frame, suite.contract, path=suite.path, context=context)
    elif suite.build is not None:
        df = suite.build()
        report = validate_frame(df, suite.contract, path=suite.path, context=context)
    else:
        assert suite.read is not None
        report = validate_file(suite.path, suite.contract, context=context, read=suite.read)
    return report, None if suite.digest is None else sha256_file(suite.digest)
