"""Data contracts as great-expectations suites, built in code (no YAML/JSON suite files).

A :class:`~astropipe.validation.rules.Contract` names a table's required columns with their
accepted pandas dtypes and an ordered list of :class:`~astropipe.validation.rules.Rule` objects
(one GX expectation each, with a one-line human reading), built with the rule builders of
:mod:`astropipe.validation.rules`; this module holds the ZTF tables' contracts.
:func:`build_suite` turns a contract into an ``ExpectationSuite``; each expectation carries its
position and reading in ``meta`` so results can be reported in contract order.

Columns present in a table but absent from its contract are allowed; a missing contract column
fails its ``expect_column_to_exist`` expectation (and the column's other expectations report the
missing column instead of a value).

The contracts follow issue 2 §5: columns and dtypes, ra in [0, 360), dec in [-90, 90],
plausible magnitudes, MJD in each survey's era, unique keys, and completeness (non-null
fractions). ``packets.parquet`` (every packet ingest_ztf read, name and SHA-256) is checked
against the aggregate ``alerts.parquet``'s provenance records for it: its row count, and the
SHA-256 over its rows (:func:`astropipe.ztf.packetlog.packets_digest`), computed by the custom
expectation :class:`ExpectPacketLinesSha256ToEqual`. Tables with a ``survey`` column (light
curves, features) are checked row by row against their survey's entry of
``validation.ranges.surveys`` (MJD range, band names); a survey not listed there fails
``survey in {...}``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, ClassVar

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx  # noqa: E402  (after the telemetry switch)
import great_expectations.expectations as gxe  # noqa: E402
import pandas as pd  # noqa: E402
from great_expectations.core.metric_domain_types import MetricDomainTypes  # noqa: E402
from great_expectations.execution_engine import PandasExecutionEngine  # noqa: E402
from great_expectations.expectations.expectation import BatchExpectation  # noqa: E402
from great_expectations.expectations.metrics.metric_provider import metric_value  # noqa: E402
from great_expectations.expectations.metrics.table_metric_provider import (  # noqa: E402
    TableMetricProvider,
)
from great_expectations.expectations.row_conditions import Column  # noqa: E402

from astropipe.errors import ConfigError, InputFileError, MissingInputError  # noqa: E402
from astropipe.features.stage import FEATURES_SCHEMA  # noqa: E402
from astropipe.io.tables import read_metadata  # noqa: E402
from astropipe.lightcurve import LIGHTCURVE_KEY, LIGHTCURVE_SCHEMA  # noqa: E402
from astropipe.validation.config import (  # noqa: E402
    ALERTS_SURVEY,
    RangesConfig,
    TableConfig,
)
from astropipe.validation.rules import (  # noqa: E402
    FLOAT,
    INT,
    STR,
    Contract,
    Rule,
    between,
    by_survey,
    completeness,
    fmt,
    in_set,
    pandas_dtype,
    sky,
    structure,
    unique,
)
from astropipe.ztf.packetlog import PACKETS_SCHEMA, packet_lines  # noqa: E402

__all__ = [
    "Rule",
    "Contract",
    "ALERT_COLUMNS",
    "FEATURE_COLUMNS",
    "LIGHTCURVE_COLUMNS",
    "PACKET_COLUMNS",
    "ExpectPacketLinesSha256ToEqual",
    "alerts_contract",
    "lightcurves_contract",
    "packets_contract",
    "features_contract",
    "contract_for",
    "build_suite",
]

#: alerts.parquet: required columns → accepted pandas dtypes (ingest_ztf writes narrower
#: ints/floats for some candidate fields, so both widths are accepted there).
ALERT_COLUMNS: dict[str, tuple[str, ...]] = {
    "objectId": STR,
    "candid": ("int64",),
    "alertId": ("int64", "float64"),  # null except in v1.0/v1.1 packets (pandas: float64)
    "jd": ("float64",),
    "mjd": ("float64",),
    "fid": INT,
    "band": STR,
    "ra": ("float64",),
    "dec": ("float64",),
    "magpsf": FLOAT,
    "sigmapsf": FLOAT,
    "rb": FLOAT,
    "drb": FLOAT,
    "isdiffpos": STR,
    "programid": INT,
    "schemavsn": STR,
}


#: lightcurves.parquet: exactly :data:`astropipe.lightcurve.LIGHTCURVE_SCHEMA`.
LIGHTCURVE_COLUMNS: dict[str, tuple[str, ...]] = {
    f.name: pandas_dtype(f.type) for f in LIGHTCURVE_SCHEMA
}

#: features.parquet: exactly :data:`astropipe.features.stage.FEATURES_SCHEMA` (float features
#: may be NaN where undefined).
FEATURE_COLUMNS: dict[str, tuple[str, ...]] = {
    f.name: pandas_dtype(f.type) for f in FEATURES_SCHEMA
}


def alerts_contract(table: TableConfig, ranges: RangesConfig) -> Contract:
    """Contract of ``alerts.parquet`` (one row per alert, from ingest_ztf)."""
    cols = ALERT_COLUMNS
    rules = structure(cols) + completeness("alerts", cols, table.completeness)
    rules += [
        # v1.0/v1.1 (2016 pre-survey) packets name the alert by alertId and have no objectId;
        # every later packet must carry an objectId.
        Rule(
            gxe.ExpectColumnValuesToNotBeNull,
            {"column": "objectId", "row_condition": Column("alertId").is_null()},
            "objectId non-null wherever alertId is null (every packet since v1.7)",
        ),
        unique(["candid"]),
        *sky(ranges),
        # alerts.parquet has no survey column: every alert is ZTF's
        between("mjd", *ranges.survey(ALERTS_SURVEY).mjd, unit="d"),
        between("magpsf", *ranges.mag, unit="mag"),
        between("sigmapsf", 0.0, None, unit="mag"),
        between("rb", 0.0, 1.0),
        between("drb", 0.0, 1.0),
        in_set("fid", [1, 2, 3]),
        in_set("band", ranges.survey(ALERTS_SURVEY).bands),
        in_set("isdiffpos", ["t", "f"]),
    ]
    return Contract("alerts", cols, tuple(rules))


def lightcurves_contract(table: TableConfig, ranges: RangesConfig) -> Contract:
    """Contract of ``lightcurves.parquet`` (the common light-curve schema)."""
    cols = LIGHTCURVE_COLUMNS
    rules = structure(cols) + completeness("lightcurves", cols, table.completeness)
    # flux surveys (TESS/Kepler/K2) fill flux instead of mag
    detections = (Column("is_upper_limit") == False) & Column("flux").is_null()  # noqa: E712
    rules += [
        Rule(
            gxe.ExpectColumnValuesToNotBeNull,
            {"column": "mag", "row_condition": detections},
            "mag non-null on every detection without a flux (is_upper_limit false, flux null)",
        ),
        unique(list(LIGHTCURVE_KEY)),
        *sky(ranges),
        between("mag", *ranges.mag, unit="mag"),
        between("limiting_mag", *ranges.limiting_mag, unit="mag"),
        between("mag_err", 0.0, None, unit="mag"),
        between("flux_err", 0.0, None),
        *by_survey(ranges),
    ]
    return Contract("lightcurves", cols, tuple(rules))


#: packets.parquet: exactly :data:`astropipe.ztf.packetlog.PACKETS_SCHEMA`.
PACKET_COLUMNS: dict[str, tuple[str, ...]] = {f.name: pandas_dtype(f.type) for f in PACKETS_SCHEMA}

#: Rows fed to the SHA-256 at a time (bounds the bytes built at once: ~7 MB).
_DIGEST_ROWS = 1 << 16


class PacketLinesSha256(TableMetricProvider):
    """SHA-256 over a packets table's rows in order, as
    :func:`astropipe.ztf.packetlog.packets_digest` computes it from the file."""

    metric_name = "table.astropipe_packet_lines_sha256"

    @metric_value(engine=PandasExecutionEngine)
    def _pandas(
        cls,
        execution_engine: PandasExecutionEngine,
        metric_domain_kwargs: dict,
        metric_value_kwargs: dict,
        metrics: dict[str, Any],
        runtime_configuration: dict,
    ) -> str:
        df, _, _ = execution_engine.get_compute_domain(
            domain_kwargs=metric_domain_kwargs, domain_type=MetricDomainTypes.TABLE
        )
        return packet_lines_sha256(df)


def packet_lines_sha256(df: pd.DataFrame) -> str:
    """SHA-256 over ``df``'s ``(packet, sha256)`` rows in order (the packet log's aggregate)."""
    digest = hashlib.sha256()
    names, shas = df["packet"].tolist(), df["sha256"].tolist()
    for i in range(0, len(names), _DIGEST_ROWS):
        j = i + _DIGEST_ROWS
        digest.update(packet_lines(zip(names[i:j], shas[i:j], strict=True)))
    return digest.hexdigest()


class ExpectPacketLinesSha256ToEqual(BatchExpectation):
    """The SHA-256 over a packets table's rows (``<packet>\\t<sha256>\\n`` each, in order)
    equals ``value``: the one ``alerts.parquet``'s provenance records."""

    value: str
    metric_dependencies = ("table.astropipe_packet_lines_sha256",)
    domain_keys: ClassVar[tuple[str, ...]] = ()
    success_keys = ("value",)
    args_keys = ("value",)

    def _validate(
        self, metrics: dict, runtime_configuration: dict | None = None, execution_engine: Any = None
    ) -> dict[str, Any]:
        got = metrics.get("table.astropipe_packet_lines_sha256")
        return {"success": got == self.value, "result": {"observed_value": got}}


def _recorded_packets(table: TableConfig) -> dict[str, Any]:
    """The ``packets`` entry of ``table.recorded_in``'s provenance (count, sha256)."""
    where = table.recorded_in
    if where is None:
        raise ConfigError(
            "validation.tables.packets.recorded_in: not set; name the table whose provenance "
            "records the packets (${ztf.outputs.alerts})."
        )
    if not Path(where).is_file():
        raise MissingInputError(f"{where}: file not found; build it with `{table.build}`.")
    try:
        meta = read_metadata(where)
    except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise InputFileError(
            f"{where}: not a readable Parquet file ({exc}); re-create it or fetch it with dvc pull."
        ) from exc
    record = meta.get("provenance", {}).get("packets")
    if not isinstance(record, dict) or not {"count", "sha256"} <= set(record):
        raise InputFileError(
            f"{where}: its provenance has no packets record (count, sha256); re-create it with "
            f"`{table.build}`."
        )
    return record


def packets_contract(table: TableConfig, ranges: RangesConfig) -> Contract:
    """Contract of ``packets.parquet`` (every packet ingest_ztf read, in input order): names
    non-null and unique, SHA-256 as 64 lowercase hex digits, and the row count and the SHA-256
    over the rows equal to what ``table.recorded_in`` (alerts.parquet) records."""
    del ranges  # no range applies
    cols = PACKET_COLUMNS
    record = _recorded_packets(table)
    source = Path(table.recorded_in or "").name
    rules = structure(cols) + completeness("packets", cols, table.completeness)
    rules += [
        Rule(gxe.ExpectColumnValuesToNotBeNull, {"column": "packet"}, "packet non-null"),
        unique(["packet"]),
        Rule(gxe.ExpectColumnValuesToNotBeNull, {"column": "sha256"}, "sha256 non-null"),
        Rule(
            gxe.ExpectColumnValuesToMatchRegex,
            {"column": "sha256", "regex": "^[0-9a-f]{64}$"},
            "sha256 is 64 lowercase hex digits",
        ),
        Rule(
            gxe.ExpectTableRowCountToEqual,
            {"value": int(record["count"])},
            f"rows = the packet count {source}'s provenance records ({record['count']})",
        ),
        Rule(
            ExpectPacketLinesSha256ToEqual,
            {"value": str(record["sha256"])},
            f"SHA-256 over the rows = the one {source}'s provenance records "
            f"({str(record['sha256'])[:12]}…)",
        ),
    ]
    return Contract("packets", cols, tuple(rules))


def features_contract(table: TableConfig, ranges: RangesConfig) -> Contract:
    """Contract of ``features.parquet`` (one row per object and band; magnitude groups have
    ``mag_peak``, flux groups ``flux_peak``)."""
    cols = FEATURE_COLUMNS
    rules = structure(cols) + completeness("features", cols, table.completeness)
    magnitudes = Column("mag_peak").is_not_null()
    rules += [
        unique(["object_id", "band"]),
        between("n_obs", 1, None),
        between("time_span", 0.0, None, unit="d"),
        *(
            Rule(
                gxe.ExpectColumnValuesToBeBetween,
                {
                    "column": c,
                    "min_value": ranges.mag[0],
                    "max_value": ranges.mag[1],
                    "row_condition": magnitudes,
                },
                f"{c} in [{fmt(ranges.mag[0])}, {fmt(ranges.mag[1])}] mag where mag_peak is set"
                " (magnitude groups; nulls ignored)",
            )
            for c in ("mean", "median")
        ),
        between("std", 0.0, None, unit="mag"),
        between("amplitude", 0.0, None, unit="mag"),
        between("mad", 0.0, None, unit="mag"),
        between("rise_time", 0.0, None, unit="d"),
        between("decay_time", 0.0, None, unit="d"),
        between("beyond_1_std", 0.0, 1.0),
        between("beyond_2_std", 0.0, 1.0),
        between("stetson_k", 0.0, 1.0),
        between("eta", 0.0, None),
        between("linear_fit_slope_sigma", 0.0, None),
        between("linear_fit_reduced_chi2", 0.0, None),
        between("ls_period", 0.0, None, unit="d"),
        between("ls_power", 0.0, 1.0),
        between("ls_fap", 0.0, 1.0),
        between("cdpp", 0.0, None, unit="ppm"),
        *by_survey(ranges, mjd=("mjd_first", "mjd_last")),
    ]
    return Contract("features", cols, tuple(rules))


_BUILDERS = {
    "alerts": alerts_contract,
    "lightcurves": lightcurves_contract,
    "packets": packets_contract,
    "features": features_contract,
}


def contract_for(name: str, table: TableConfig, ranges: RangesConfig) -> Contract:
    """Return the contract of table ``name`` (alerts, lightcurves, packets, features; catalogs:
    koi, toi, k2, objects; ingest_mast: mast_observations, mast_products)."""
    # imported here: the catalog and MAST contracts (validation/catalogs.py, validation/mast.py)
    # use this module's helpers
    from astropipe.validation.catalogs import CATALOG_BUILDERS
    from astropipe.validation.mast import MAST_BUILDERS

    builders = {**_BUILDERS, **CATALOG_BUILDERS, **MAST_BUILDERS}
    try:
        builder = builders[name]
    except KeyError:
        raise ConfigError(
            f"validation.tables: no contract for table {name!r}; valid tables are {list(builders)}."
        ) from None
    return builder(table, ranges)


def build_suite(contract: Contract) -> gx.ExpectationSuite:
    """Build the GX suite of ``contract``; ``meta`` holds each rule's position and reading."""
    # Passing the list at once skips add_expectation's quadratic duplicate check.
    expectations = [
        rule.expectation(order=i, rule=rule.text) for i, rule in enumerate(contract.rules)
    ]
    return gx.ExpectationSuite(name=contract.table, expectations=expectations)
