"""Typed schema of the ``validation`` config group (conf/validation/default.yaml)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from astropipe.config import from_mapping
from astropipe.errors import ConfigError

__all__ = ["TableConfig", "RangesConfig", "ValidationOutputs", "ValidationConfig", "TABLES"]

#: The tables with a contract, in validation (and report) order.
TABLES = ("alerts", "lightcurves", "features")


@dataclass(frozen=True)
class TableConfig:
    """One table to validate: where it is, how to build it, and its completeness thresholds."""

    path: str
    build: str
    completeness: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RangesConfig:
    """Plausibility ranges shared by the contracts."""

    ra: list[float] = field(default_factory=lambda: [0.0, 360.0])
    dec: list[float] = field(default_factory=lambda: [-90.0, 90.0])
    mag: list[float] = field(default_factory=lambda: [10.0, 25.0])
    limiting_mag: list[float] = field(default_factory=lambda: [10.0, 25.0])
    mjd: list[float] = field(default_factory=lambda: [57000.0, 62000.0])
    bands: list[str] = field(default_factory=lambda: ["zg", "zr", "zi"])

    def validate(self) -> RangesConfig:
        """Check every ``[min, max]`` pair; return self."""
        for name in ("ra", "dec", "mag", "limiting_mag", "mjd"):
            pair = getattr(self, name)
            if len(pair) != 2 or not pair[0] < pair[1]:
                raise ConfigError(
                    f"validation.ranges.{name}: expected [min, max] with min < max, found {pair}."
                )
        if not self.bands:
            raise ConfigError("validation.ranges.bands: list at least one band name.")
        return self


@dataclass(frozen=True)
class ValidationOutputs:
    """Where the validate stage writes."""

    docs: str = "reports/validation/docs"
    summary: str = "reports/validation/summary.json"


@dataclass(frozen=True)
class ValidationConfig:
    """The whole ``validation`` section."""

    tables: dict[str, TableConfig] = field(default_factory=dict)
    ranges: RangesConfig = field(default_factory=RangesConfig)
    outputs: ValidationOutputs = field(default_factory=ValidationOutputs)
    fail_on_error: bool = True

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ValidationConfig:
        """Build from the full params dict (its ``validation`` section), checking every key."""
        section = params.get("validation")
        if not isinstance(section, Mapping) or not section:
            raise ConfigError(
                "params.yaml: no 'validation' section; run `make params` to compose it from conf/."
            )
        raw = dict(section)
        tables_raw = raw.pop("tables", None) or {}
        unknown = sorted(set(tables_raw) - set(TABLES))
        if unknown:
            raise ConfigError(
                f"validation.tables: unknown table(s) {unknown}; valid tables are {list(TABLES)}."
            )
        tables = {
            name: from_mapping(TableConfig, tables_raw[name], where=f"validation.tables.{name}")
            for name in TABLES
            if name in tables_raw
        }
        for name, tcfg in tables.items():
            for col, frac in tcfg.completeness.items():
                if not 0.0 <= float(frac) <= 1.0:
                    raise ConfigError(
                        f"validation.tables.{name}.completeness.{col}: {frac} is not a fraction "
                        "in [0, 1]."
                    )
        cfg = from_mapping(cls, raw, where="validation")
        cfg.ranges.validate()
        return ValidationConfig(
            tables=tables, ranges=cfg.ranges, outputs=cfg.outputs, fail_on_error=cfg.fail_on_error
        )
