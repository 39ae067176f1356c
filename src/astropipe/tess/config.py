"""The reader's options in one typed, frozen object: :class:`TessReadConfig`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from astropipe.errors import ConfigError
from astropipe.tess.columns import DEFAULT_LAYOUTS, ColumnMap, column_map_from_mapping
from astropipe.tess.quality import PRESETS

__all__ = ["TessReadConfig"]


@dataclass(frozen=True)
class TessReadConfig:
    """How :func:`astropipe.tess.reader.read_lightcurve_fits` reads a light-curve file.

    Parameters
    ----------
    flux_column
        Logical flux to read: ``"pdcsap"`` (default: PDCSAP_FLUX, eleanor CORR_FLUX) or
        ``"sap"`` (SAP_FLUX, eleanor RAW_FLUX), or another name a column map defines (eleanor:
        ``corr``, ``pca``, ``psf``, ``raw``).
    quality
        A preset (``none``, ``default``, ``hard``, ``hardest``; see
        :mod:`astropipe.tess.quality`) or an integer bitmask. Cadences with
        ``QUALITY & bitmask != 0`` are kept and get
        :data:`~astropipe.lightcurve.FLAG_QUALITY_MASKED`.
    layouts
        The column maps tried in order; the first one a file matches is used.
    """

    flux_column: str = "pdcsap"
    quality: str | int = "default"
    layouts: tuple[ColumnMap, ...] = field(default=DEFAULT_LAYOUTS)

    def __post_init__(self) -> None:
        layouts = tuple(self.layouts)
        object.__setattr__(self, "layouts", layouts)
        if not layouts:
            raise ConfigError("tess.layouts is empty; give at least one column map.")
        names = [lay.name for lay in layouts]
        if len(set(names)) != len(names):
            raise ConfigError(f"tess.layouts: names repeat ({names}); give each map its own name.")
        known = sorted({k for lay in layouts for k in lay.fluxes})
        if self.flux_column not in known:
            raise ConfigError(
                f"tess.flux_column={self.flux_column!r} is not defined by any column map; "
                f"use one of {known}."
            )
        q = self.quality
        if isinstance(q, bool) or not isinstance(q, (int, str)):
            raise ConfigError(
                f"tess.quality={q!r}: expected a preset {list(PRESETS)} or an integer bitmask."
            )
        if isinstance(q, str) and q not in PRESETS:
            raise ConfigError(
                f"tess.quality={q!r} is not a preset; use one of {list(PRESETS)} or an integer "
                "bitmask."
            )
        if isinstance(q, int) and not 0 <= q < 1 << 32:
            raise ConfigError(
                f"tess.quality={q}: a bitmask must be in [0, 2**32); survey bits are 0-31."
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str = "tess") -> TessReadConfig:
        """Build from a plain mapping such as ``params["tess"]["read"]``.

        ``layouts``, when given, maps a layout name to its column map (see
        :func:`~astropipe.tess.columns.column_map_from_mapping`) and replaces the defaults.
        """
        data = dict(data or {})
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(
                f"{where}: unknown keys {unknown}; known keys are "
                f"{sorted(cls.__dataclass_fields__)}."
            )
        if "layouts" in data:
            raw = data["layouts"]
            if not isinstance(raw, Mapping):
                raise ConfigError(f"{where}.layouts: expected a mapping name → column map.")
            data["layouts"] = tuple(column_map_from_mapping(k, v) for k, v in raw.items())
        return cls(**data)
