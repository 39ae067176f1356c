"""Column maps (which FITS columns and keywords mean what) and the TESS light-curve table schema.

A light-curve product is described by a :class:`ColumnMap`, as data: the table extension, the
time, quality and cadence-number columns, the flux columns behind each logical flux name
(``pdcsap``, ``sap``, …), where the catalogue id lives, and the fallbacks for products whose
headers lack a time reference or a cadence (eleanor). A new HLSP layout is a new map in
``conf/tess``, not a code branch. The three maps shipped here cover SPOC TESS light curves (and
the tess-data-alerts HLSP, which is the SPOC layout), Kepler/K2 archive light curves, and
eleanor / GSFC-ELEANOR-LITE HLSPs.

:data:`MISSIONS` holds what follows from the mission itself: the catalogue prefix of the
object id (TIC, KIC, EPIC), the keyword that numbers the observing season (SECTOR, QUARTER,
CAMPAIGN) and the photometric band.

The keys of the table (:data:`SEGMENT`, one light curve; :data:`CADENCE_KEY`, one cadence;
:data:`SORT_KEY`, the row order) and the QUALITY bits each layout may set
(:func:`known_quality_bits`, declared in the file's provenance by ingest_tess and read back by
:func:`read_known_quality_bits`) are the table's contract with its readers (validate).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from astropipe.errors import ConfigError, InputFileError
from astropipe.io.tables import read_metadata
from astropipe.lightcurve import LIGHTCURVE_SCHEMA, LIGHTCURVE_UNITS
from astropipe.tess.quality import QUALITY_FAMILIES

if TYPE_CHECKING:
    from astropipe.tess.config import TessReadConfig

__all__ = [
    "FluxColumns",
    "ColumnMap",
    "Mission",
    "MISSIONS",
    "SPOC_TESS",
    "KEPLER",
    "ELEANOR",
    "DEFAULT_LAYOUTS",
    "TESS_LIGHTCURVE_SCHEMA",
    "TESS_LIGHTCURVE_UNITS",
    "column_map_from_mapping",
    "SEGMENT",
    "CADENCE_KEY",
    "SORT_KEY",
    "KNOWN_QUALITY_BITS_KEY",
    "known_quality_bits",
    "read_known_quality_bits",
]


@dataclass(frozen=True)
class FluxColumns:
    """The columns behind one logical flux (e.g. ``pdcsap``).

    Parameters
    ----------
    flux
        The flux column.
    err
        Its uncertainty column, or None when the product has none.
    err_relative_to
        When set, ``err`` is the uncertainty of *this* column, not of ``flux`` (eleanor's
        ``FLUX_ERR`` belongs to ``RAW_FLUX``); the reader then carries the relative error
        over: ``flux_err = flux * err / err_relative_to``, as lightkurve's eleanor reader does.
    """

    flux: str
    err: str | None = None
    err_relative_to: str | None = None

    def columns(self) -> tuple[str, ...]:
        """Every column this flux needs."""
        return tuple(c for c in (self.flux, self.err, self.err_relative_to) if c)


@dataclass(frozen=True)
class ColumnMap:
    """How one light-curve product lays out its table and headers.

    A file matches the map when its table extension exists, holds every column the map names,
    and every keyword of ``match`` has the given value (case-insensitive, in the primary or the
    table header). Keywords about the target (ids, RA_OBJ/DEC_OBJ, MISSION/TELESCOP, the season,
    ``match``) are looked up in the primary header first, then the table header; keywords
    about TIME (TIMEREF, TIMESYS, TIMEUNIT, BJDREF*, TIMEDEL, TIMEPIXR, TIERRELA) in the table
    header first, then the primary.

    Parameters
    ----------
    name
        Name of the layout; also the ``source`` column of the rows read with it.
    quality_family
        Which mission's QUALITY bits the product uses (``"tess"`` or ``"kepler"``).
    match
        Header keyword → required value.
    extension
        The table HDU: its EXTNAME, or its index.
    time, quality, cadenceno
        Column names (``cadenceno`` may be None).
    fluxes
        Logical flux name → :class:`FluxColumns`.
    target_keys
        Header keywords holding the catalogue id, tried in order.
    extra_quality_bits
        The product's own QUALITY bits beyond the mission's (join the ``hardest`` preset).
    time_reference_jd
        BJD of TIME = 0, used only when the headers have neither BJDREFI/BJDREFF nor BJDREF.
    time_scale
        Time scale assumed when the headers have no TIMESYS.
    cadence_s
        Cadence in seconds, used only when the headers have no TIMEDEL.
    """

    name: str
    quality_family: str
    match: Mapping[str, str] = field(default_factory=dict)
    extension: str | int = "LIGHTCURVE"
    time: str = "TIME"
    quality: str = "QUALITY"
    cadenceno: str | None = "CADENCENO"
    fluxes: Mapping[str, FluxColumns] = field(default_factory=dict)
    target_keys: tuple[str, ...] = ()
    extra_quality_bits: int = 0
    time_reference_jd: float | None = None
    time_scale: str = "TDB"
    cadence_s: float | None = None

    def __post_init__(self) -> None:
        where = f"column map {self.name!r}"
        if self.quality_family not in QUALITY_FAMILIES:
            raise ConfigError(
                f"{where}: quality_family={self.quality_family!r}; use one of "
                f"{sorted(QUALITY_FAMILIES)}."
            )
        if not self.fluxes:
            raise ConfigError(f"{where}: fluxes is empty; name at least one flux column.")
        if not self.target_keys:
            raise ConfigError(f"{where}: target_keys is empty; name the catalogue-id keyword.")
        if isinstance(self.extra_quality_bits, bool) or self.extra_quality_bits < 0:
            raise ConfigError(f"{where}: extra_quality_bits must be an integer >= 0.")
        if self.time_scale.upper() != "TDB":
            # Only TDB is converted with + and - alone; another scale needs leap seconds.
            raise ConfigError(f"{where}: time_scale={self.time_scale!r}; only TDB is supported.")
        if self.cadence_s is not None and not self.cadence_s > 0:
            raise ConfigError(f"{where}: cadence_s must be > 0 or null.")
        object.__setattr__(self, "match", MappingProxyType(dict(self.match)))
        object.__setattr__(self, "fluxes", MappingProxyType(dict(self.fluxes)))
        object.__setattr__(self, "target_keys", tuple(self.target_keys))

    def __reduce__(self) -> tuple[Any, ...]:
        # A mappingproxy does not pickle; the reader's config crosses to compute workers.
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        state["match"], state["fluxes"] = dict(self.match), dict(self.fluxes)
        return (_column_map, (state,))

    def required_columns(self, flux: str) -> tuple[str, ...]:
        """The columns a file must hold to be read with this map and logical flux ``flux``."""
        cols = [self.time, self.quality]
        if self.cadenceno:
            cols.append(self.cadenceno)
        cols.extend(self.fluxes[flux].columns())
        return tuple(dict.fromkeys(cols))


def _column_map(state: dict[str, Any]) -> ColumnMap:
    """Rebuild a pickled :class:`ColumnMap` (see ``ColumnMap.__reduce__``)."""
    return ColumnMap(**state)


@dataclass(frozen=True)
class Mission:
    """What follows from the mission: id prefix, season keyword, band."""

    name: str
    id_prefix: str
    season_key: str
    band: str


#: Mission name (header MISSION, else TELESCOP) → :class:`Mission`.
MISSIONS: Mapping[str, Mission] = MappingProxyType(
    {
        "TESS": Mission("TESS", "TIC", "SECTOR", "TESS"),
        "KEPLER": Mission("Kepler", "KIC", "QUARTER", "Kepler"),
        "K2": Mission("K2", "EPIC", "CAMPAIGN", "Kepler"),
    }
)

#: SPOC 2-min (and 20-s, 200-s FFI TESS-SPOC) light curves; the tess-data-alerts HLSP.
SPOC_TESS = ColumnMap(
    name="spoc",
    quality_family="tess",
    match={"TELESCOP": "TESS"},
    fluxes={
        "pdcsap": FluxColumns("PDCSAP_FLUX", "PDCSAP_FLUX_ERR"),
        "sap": FluxColumns("SAP_FLUX", "SAP_FLUX_ERR"),
    },
    target_keys=("TICID",),
)

#: Kepler (long and short cadence) and K2 archive light curves.
KEPLER = ColumnMap(
    name="kepler",
    quality_family="kepler",
    match={"TELESCOP": "Kepler"},
    quality="SAP_QUALITY",
    fluxes={
        "pdcsap": FluxColumns("PDCSAP_FLUX", "PDCSAP_FLUX_ERR"),
        "sap": FluxColumns("SAP_FLUX", "SAP_FLUX_ERR"),
    },
    target_keys=("KEPLERID",),
)

#: eleanor and GSFC-ELEANOR-LITE HLSPs: FFI light curves, no EXTNAME, keywords in the primary
#: header, FLUX_ERR belongs to RAW_FLUX, QUALITY adds bits 2^17 and 2^18 to the TESS ones.
#: ``pdcsap`` maps to CORR_FLUX (the systematics-corrected flux, lightkurve's default) and
#: ``sap`` to RAW_FLUX (the plain aperture sum).
ELEANOR = ColumnMap(
    name="eleanor",
    quality_family="tess",
    match={"TELESCOP": "TESS"},
    extension=1,
    cadenceno="FFIINDEX",
    fluxes={
        "pdcsap": FluxColumns("CORR_FLUX", "FLUX_ERR", "RAW_FLUX"),
        "sap": FluxColumns("RAW_FLUX", "FLUX_ERR"),
        "corr": FluxColumns("CORR_FLUX", "FLUX_ERR", "RAW_FLUX"),
        "pca": FluxColumns("PCA_FLUX", "FLUX_ERR", "RAW_FLUX"),
        "psf": FluxColumns("PSF_FLUX", "FLUX_ERR", "RAW_FLUX"),
        "raw": FluxColumns("RAW_FLUX", "FLUX_ERR"),
    },
    target_keys=("TIC_ID", "TICID"),
    extra_quality_bits=(1 << 17) | (1 << 18),
    time_reference_jd=2457000.0,  # eleanor TIME is BTJD
    cadence_s=1800.0,  # sectors 1-26 FFIs; TIMEDEL, when present, wins
)

#: The maps tried, in order, when the configuration names none.
DEFAULT_LAYOUTS: tuple[ColumnMap, ...] = (SPOC_TESS, KEPLER, ELEANOR)


def column_map_from_mapping(name: str, data: Mapping[str, Any]) -> ColumnMap:
    """Build a :class:`ColumnMap` from a plain mapping (a ``conf/tess`` entry).

    ``fluxes`` values are mappings with ``flux``, ``err`` and ``err_relative_to``. Unknown keys
    raise :class:`ConfigError` naming the key.
    """
    known = set(ColumnMap.__dataclass_fields__) - {"name"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"tess.layouts.{name}: unknown keys {unknown}; known keys are {sorted(known)}."
        )
    kwargs = dict(data)
    fluxes = {}
    for key, spec in dict(kwargs.pop("fluxes", {}) or {}).items():
        if isinstance(spec, str):
            spec = {"flux": spec}
        bad = sorted(set(spec) - set(FluxColumns.__dataclass_fields__))
        if bad or "flux" not in spec:
            raise ConfigError(
                f"tess.layouts.{name}.fluxes.{key}: expected keys flux, err, err_relative_to; "
                f"found {sorted(spec)}."
            )
        fluxes[key] = FluxColumns(**spec)
    if "target_keys" in kwargs:
        kwargs["target_keys"] = tuple(kwargs["target_keys"])
    try:
        return ColumnMap(name=name, fluxes=fluxes, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"tess.layouts.{name}: {exc}") from None


_EXTRA_FIELDS = [
    pa.field("target_id", pa.int64(), nullable=False),  # TIC / KIC / EPIC number
    pa.field("mission", pa.string(), nullable=False),  # TESS | Kepler | K2
    pa.field("sector", pa.int32()),  # TESS only
    pa.field("quarter", pa.int32()),  # Kepler only
    pa.field("campaign", pa.int32()),  # K2 only
    pa.field("cadence_s", pa.float64()),  # TIMEDEL in seconds
    pa.field("cadenceno", pa.int64()),
    pa.field("quality", pa.int64(), nullable=False),  # the raw QUALITY / SAP_QUALITY value
    pa.field("flux_column", pa.string(), nullable=False),  # the FITS column read as flux
]

#: The common light-curve schema (:data:`astropipe.lightcurve.LIGHTCURVE_SCHEMA`, same names,
#: types and order) followed by the columns space photometry needs.
TESS_LIGHTCURVE_SCHEMA = pa.schema(list(LIGHTCURVE_SCHEMA) + _EXTRA_FIELDS)

#: Units of :data:`TESS_LIGHTCURVE_SCHEMA` columns (astropy unit syntax).
TESS_LIGHTCURVE_UNITS = {
    **LIGHTCURVE_UNITS,
    "flux": "electron / s",
    "flux_err": "electron / s",
    "cadence_s": "s",
}


#: One light curve: the columns that are constant along it. Time increases within each.
SEGMENT = ("object_id", "mission", "sector", "quarter", "campaign", "source", "cadence_s")
#: One cadence: unique in the output (cadence numbers count per product and cadence, so the
#: product and the cadence are part of the key: Kepler short- and long-cadence numbers overlap).
CADENCE_KEY = (*SEGMENT, "cadenceno")
#: Row order of lightcurves.parquet.
SORT_KEY = (*SEGMENT, "mjd", "cadenceno")
#: Provenance key: layout name → every QUALITY bit that layout may set (mission bits + its own).
KNOWN_QUALITY_BITS_KEY = "known_quality_bits"


def known_quality_bits(reader: TessReadConfig) -> dict[str, int]:
    """Layout name → every QUALITY bit it may set: its mission's named bits and its own."""
    return {
        lay.name: QUALITY_FAMILIES[lay.quality_family].all_bits | lay.extra_quality_bits
        for lay in reader.layouts
    }


def read_known_quality_bits(path: str | Path) -> dict[str, int]:
    """What :func:`known_quality_bits` gave when ``path`` (a lightcurves.parquet) was written.

    Raises
    ------
    InputFileError
        The file carries no such record (not written by ingest_tess).
    """
    bits = read_metadata(path).get("provenance", {}).get(KNOWN_QUALITY_BITS_KEY)
    if not isinstance(bits, dict):
        raise InputFileError(
            f"{path}: no '{KNOWN_QUALITY_BITS_KEY}' in its provenance; it was not written by "
            "ingest_tess — rebuild it with `dvc repro ingest_tess`."
        )
    return {str(k): int(v) for k, v in bits.items()}
