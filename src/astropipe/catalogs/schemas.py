"""The NASA Exoplanet Archive catalogs as data: one typed column list per catalog.

Each :class:`CatalogSpec` declares every column a catalog table keeps, with its Arrow type,
its unit in astropy syntax (``""``: none astropy knows, e.g. Earth flux, or a string), the
unit as the archive writes it, and the archive's description. The lists follow the archive's
own column documentation (the ``# COLUMN name: description [unit]`` lines of its CSV
downloads; the sample files in ``data/sample/catalogs`` carry them), so a table read from the
TAP service, whose CSV has no comment block, gets the same descriptions and units.

Types: identifiers that are numbers in the archive (``kepid``, ``tid``) are ``int64``;
identifiers written with a decimal point are strings, because their digits are the name:
TOI ``216.10`` is not TOI ``216.1`` (``toi`` is stored as the archive wrote it); flags and
limit flags are ``int32``; every measurement is ``float64`` (parsed correctly rounded by
Arrow, the same bits on every machine); sexagesimal ``rastr``/``decstr`` and dates stay
strings, next to the decimal ``ra``/``dec``.

The K2 columns (``k2pandc``) follow the archive's column documentation; no K2 sample exists
in this repository, so they have never been checked against a recorded answer (see
docs/ingest_catalogs.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

__all__ = ["Column", "CatalogSpec", "KOI", "TOI", "K2", "CATALOGS"]

STR = pa.string()
I64 = pa.int64()
I32 = pa.int32()
F64 = pa.float64()


@dataclass(frozen=True)
class Column:
    """One declared column.

    Attributes
    ----------
    name
        The archive's column name.
    type
        Arrow type in the output table.
    unit
        Unit in astropy syntax (``""`` when astropy has none or the column has no unit).
    archive_unit
        The unit as the archive writes it in ``[...]`` (``BKJD``, ``Earth radii``, ...).
    description
        The archive's description.
    """

    name: str
    type: pa.DataType
    unit: str
    archive_unit: str
    description: str


@dataclass(frozen=True)
class CatalogSpec:
    """What the ingest needs to know about one archive table.

    Attributes
    ----------
    name
        Short name used in conf/ and file names: ``koi``, ``toi``, ``k2``.
    tap_table
        The archive's TAP table (``cumulative``, ``toi``, ``k2pandc``).
    id_column
        The catalog entry's name, unique per row (``kepoi_name``, ``toi``, ``pl_name``).
    id_kind
        The light-curve catalogue the target id belongs to: ``KIC``, ``TIC`` or ``EPIC``.
    mission
        The light-curve mission these targets are linked to (``Kepler``, ``TESS``, ``K2``).
    target_column
        The int64 column holding the KIC/TIC/EPIC number.
    target_source
        When set, ``target_column`` is derived from this string column (``EPIC 211436265``).
    columns
        The declared columns, in output order (a derived target column comes last).
    """

    name: str
    tap_table: str
    id_column: str
    id_kind: str
    mission: str
    target_column: str
    columns: tuple[Column, ...]
    target_source: str | None = None

    @property
    def names(self) -> list[str]:
        """The declared column names, in order."""
        return [c.name for c in self.columns]

    @property
    def read_names(self) -> list[str]:
        """The columns read from the archive (the derived target column is not)."""
        return [
            c.name for c in self.columns if c.name != self.target_column or not self.target_source
        ]

    def schema(self) -> pa.Schema:
        """The Arrow schema without field metadata (the reader adds descriptions and units)."""
        return pa.schema([pa.field(c.name, c.type) for c in self.columns])

    def column(self, name: str) -> Column:
        """The declared column ``name``."""
        return next(c for c in self.columns if c.name == name)


KOI = CatalogSpec(
    name="koi",
    tap_table="cumulative",
    id_column="kepoi_name",
    id_kind="KIC",
    mission="Kepler",
    target_column="kepid",
    columns=(
        Column("kepid", I64, "", "", "KepID"),
        Column("kepoi_name", STR, "", "", "KOI Name"),
        Column("kepler_name", STR, "", "", "Kepler Name"),
        Column("koi_disposition", STR, "", "", "Exoplanet Archive Disposition"),
        Column("koi_pdisposition", STR, "", "", "Disposition Using Kepler Data"),
        Column("koi_score", F64, "", "", "Disposition Score"),
        Column("koi_fpflag_nt", I32, "", "", "Not Transit-Like False Positive Flag"),
        Column("koi_fpflag_ss", I32, "", "", "Stellar Eclipse False Positive Flag"),
        Column("koi_fpflag_co", I32, "", "", "Centroid Offset False Positive Flag"),
        Column(
            "koi_fpflag_ec",
            I32,
            "",
            "",
            "Ephemeris Match Indicates Contamination False Positive Flag",
        ),
        Column("koi_period", F64, "d", "days", "Orbital Period"),
        Column("koi_period_err1", F64, "d", "days", "Orbital Period Upper Unc."),
        Column("koi_period_err2", F64, "d", "days", "Orbital Period Lower Unc."),
        Column("koi_time0bk", F64, "d", "BKJD", "Transit Epoch"),
        Column("koi_time0bk_err1", F64, "d", "BKJD", "Transit Epoch Upper Unc."),
        Column("koi_time0bk_err2", F64, "d", "BKJD", "Transit Epoch Lower Unc."),
        Column("koi_impact", F64, "", "", "Impact Parameter"),
        Column("koi_impact_err1", F64, "", "", "Impact Parameter Upper Unc."),
        Column("koi_impact_err2", F64, "", "", "Impact Parameter Lower Unc."),
        Column("koi_duration", F64, "h", "hrs", "Transit Duration"),
        Column("koi_duration_err1", F64, "h", "hrs", "Transit Duration Upper Unc."),
        Column("koi_duration_err2", F64, "h", "hrs", "Transit Duration Lower Unc."),
        Column("koi_depth", F64, "1e-06", "ppm", "Transit Depth"),
        Column("koi_depth_err1", F64, "1e-06", "ppm", "Transit Depth Upper Unc."),
        Column("koi_depth_err2", F64, "1e-06", "ppm", "Transit Depth Lower Unc."),
        Column("koi_prad", F64, "R_earth", "Earth radii", "Planetary Radius"),
        Column("koi_prad_err1", F64, "R_earth", "Earth radii", "Planetary Radius Upper Unc."),
        Column("koi_prad_err2", F64, "R_earth", "Earth radii", "Planetary Radius Lower Unc."),
        Column("koi_teq", F64, "K", "K", "Equilibrium Temperature"),
        Column("koi_teq_err1", F64, "K", "K", "Equilibrium Temperature Upper Unc."),
        Column("koi_teq_err2", F64, "K", "K", "Equilibrium Temperature Lower Unc."),
        Column("koi_insol", F64, "", "Earth flux", "Insolation Flux"),
        Column("koi_insol_err1", F64, "", "Earth flux", "Insolation Flux Upper Unc."),
        Column("koi_insol_err2", F64, "", "Earth flux", "Insolation Flux Lower Unc."),
        Column("koi_model_snr", F64, "", "", "Transit Signal-to-Noise"),
        Column("koi_tce_plnt_num", I32, "", "", "TCE Planet Number"),
        Column("koi_tce_delivname", STR, "", "", "TCE Delivery"),
        Column("koi_steff", F64, "K", "K", "Stellar Effective Temperature"),
        Column("koi_steff_err1", F64, "K", "K", "Stellar Effective Temperature Upper Unc."),
        Column("koi_steff_err2", F64, "K", "K", "Stellar Effective Temperature Lower Unc."),
        Column("koi_slogg", F64, "dex(cm / s2)", "log10(cm/s**2)", "Stellar Surface Gravity"),
        Column(
            "koi_slogg_err1",
            F64,
            "dex(cm / s2)",
            "log10(cm/s**2)",
            "Stellar Surface Gravity Upper Unc.",
        ),
        Column(
            "koi_slogg_err2",
            F64,
            "dex(cm / s2)",
            "log10(cm/s**2)",
            "Stellar Surface Gravity Lower Unc.",
        ),
        Column("koi_srad", F64, "R_sun", "Solar radii", "Stellar Radius"),
        Column("koi_srad_err1", F64, "R_sun", "Solar radii", "Stellar Radius Upper Unc."),
        Column("koi_srad_err2", F64, "R_sun", "Solar radii", "Stellar Radius Lower Unc."),
        Column("ra", F64, "deg", "decimal degrees", "RA"),
        Column("dec", F64, "deg", "decimal degrees", "Dec"),
        Column("koi_kepmag", F64, "mag", "mag", "Kepler-band"),
    ),
)

TOI = CatalogSpec(
    name="toi",
    tap_table="toi",
    id_column="toi",
    id_kind="TIC",
    mission="TESS",
    target_column="tid",
    columns=(
        Column("toi", STR, "", "", "TESS Object of Interest"),
        Column("tid", I64, "", "", "TESS Input Catalog ID"),
        Column("tfopwg_disp", STR, "", "", "TFOPWG Dispostion (CP | FP | KP | PC)"),
        Column("rastr", STR, "", "sexagesimal", "RA"),
        Column("ra", F64, "deg", "deg", "RA"),
        Column("decstr", STR, "", "sexagesimal", "Dec"),
        Column("dec", F64, "deg", "deg", "Dec"),
        Column("st_pmra", F64, "mas / yr", "mas/yr", "PMRA"),
        Column("st_pmraerr1", F64, "mas / yr", "mas/yr", "PMRA Upper Unc"),
        Column("st_pmraerr2", F64, "mas / yr", "mas/yr", "PMRA Lower Unc"),
        Column("st_pmralim", I32, "", "", "PMRA Limit Flag"),
        Column("st_pmdec", F64, "mas / yr", "mas/yr", "PMDec"),
        Column("st_pmdecerr1", F64, "mas / yr", "mas/yr", "PMDec Upper Unc"),
        Column("st_pmdecerr2", F64, "mas / yr", "mas/yr", "PMDec Lower Unc"),
        Column("st_pmdeclim", I32, "", "", "PMDec Limit Flag"),
        Column("pl_tranmid", F64, "d", "BJD", "Planet Transit Midpoint Value"),
        Column("pl_tranmiderr1", F64, "d", "BJD", "Planet Transit Midpoint Upper Unc"),
        Column("pl_tranmiderr2", F64, "d", "BJD", "Planit Transit Midpoint Lower Unc"),
        Column("pl_tranmidlim", I32, "", "", "Planet Transit Midpoint Limit Flag"),
        Column("pl_orbper", F64, "d", "days", "Planet Orbital Period Value"),
        Column("pl_orbpererr1", F64, "d", "days", "Planet Orbital Period Upper Unc"),
        Column("pl_orbpererr2", F64, "d", "days", "Planet Orbital Period Lower Unc"),
        Column("pl_orbperlim", I32, "", "", "Planet Orbital Period Limit Flag"),
        Column("pl_trandurh", F64, "h", "hours", "Planet Transit Duration Value"),
        Column("pl_trandurherr1", F64, "h", "hours", "Planet Transit Duration Upper Unc"),
        Column("pl_trandurherr2", F64, "h", "hours", "Planet Transit Duration Lower Unc"),
        Column("pl_trandurhlim", I32, "", "", "Planet Transit Duration Limit Flag"),
        Column("pl_trandep", F64, "1e-06", "ppm", "Planet Transit Depth Value"),
        Column("pl_trandeperr1", F64, "1e-06", "ppm", "Planet Transit Depth Upper Unc"),
        Column("pl_trandeperr2", F64, "1e-06", "ppm", "Planet Transit Depth Lower Unc"),
        Column("pl_trandeplim", I32, "", "", "Planet Transit Depth Limit Flag"),
        Column("pl_rade", F64, "R_earth", "R_Earth", "Planet Radius Value"),
        Column("pl_radeerr1", F64, "R_earth", "R_Earth", "Planet Radius Upper Unc"),
        Column("pl_radeerr2", F64, "R_earth", "R_Earth", "Planet Radius Lower Unc"),
        Column("pl_radelim", I32, "", "", "Planet Radius Limit Flag"),
        Column("pl_insol", F64, "", "Earth flux", "Planet Insolation Value"),
        Column("pl_insolerr1", F64, "", "Earth flux", "Planet Insolation Upper Unc"),
        Column("pl_insolerr2", F64, "", "Earth flux", "Planet Insolation Lower Unc"),
        Column("pl_insollim", I32, "", "", "Planet Insolation Limit Flag"),
        Column("pl_eqt", F64, "K", "K", "Planet Equilibrium Temperature Value"),
        Column("pl_eqterr1", F64, "K", "K", "Planet Equilibrium Temperature Upper Unc"),
        Column("pl_eqterr2", F64, "K", "K", "Planet Equilibrium Temperature Lower Unc"),
        Column("pl_eqtlim", I32, "", "", "Planet Equilibrium Temperature Limit Flag"),
        Column("st_tmag", F64, "", "", "TESS Magnitude"),
        Column("st_tmagerr1", F64, "", "", "TESS Magnitude Upper Unc"),
        Column("st_tmagerr2", F64, "", "", "TESS Magnitude Lower Unc"),
        Column("st_tmaglim", I32, "", "", "TESS Magnitude Limit Flag"),
        Column("st_dist", F64, "pc", "pc", "Stellar Distance"),
        Column("st_disterr1", F64, "pc", "pc", "Stellar Distance Upper Unc"),
        Column("st_disterr2", F64, "pc", "pc", "Stellar Distance Lower Unc"),
        Column("st_distlim", I32, "", "", "Stellar Distance Limit Flag"),
        Column("st_teff", F64, "K", "K", "Stellar Effective Temperature Value"),
        Column("st_tefferr1", F64, "K", "K", "Stellar Effective Termperature Upper Unc"),
        Column("st_tefferr2", F64, "K", "K", "Stellar Effective Temperature Lower Unc"),
        Column("st_tefflim", I32, "", "", "Stellar Effective Temperature Limit Flag"),
        Column("st_logg", F64, "dex(cm / s2)", "cm/s**2", "Stellar log(g) Value"),
        Column("st_loggerr1", F64, "dex(cm / s2)", "cm/s**", "Stellar log(g) Upper Unc"),
        Column("st_loggerr2", F64, "dex(cm / s2)", "cm/s**2", "Stellar log(g) Lower Unc"),
        Column("st_logglim", I32, "", "", "Stellar log(g) Limit Flag"),
        Column("st_rad", F64, "R_sun", "R_Sun", "Stellar Radius Value"),
        Column("st_raderr1", F64, "R_sun", "R_Sun", "Stellar Radius Upper Unc"),
        Column("st_raderr2", F64, "R_sun", "R_Sun", "Stellar Radius Lower Unc"),
        Column("st_radlim", I32, "", "", "Stellar Radius Limit Flag"),
        Column("toi_created", STR, "", "", "TOI Created Date"),
        Column("rowupdate", STR, "", "", "Date Modified"),
    ),
)

K2 = CatalogSpec(
    name="k2",
    tap_table="k2pandc",
    id_column="pl_name",
    id_kind="EPIC",
    mission="K2",
    target_column="epic",
    target_source="epic_hostname",
    columns=(
        Column("pl_name", STR, "", "", "Planet Name"),
        Column("hostname", STR, "", "", "Host Name"),
        Column("epic_hostname", STR, "", "", "EPIC Host Name"),
        Column("epic_candname", STR, "", "", "EPIC Candidate Name"),
        Column("tic_id", STR, "", "", "TIC ID"),
        Column("disposition", STR, "", "", "Archive Disposition"),
        Column("default_flag", I32, "", "", "Default Parameter Set"),
        Column("pl_orbper", F64, "d", "days", "Orbital Period"),
        Column("pl_orbpererr1", F64, "d", "days", "Orbital Period Upper Unc."),
        Column("pl_orbpererr2", F64, "d", "days", "Orbital Period Lower Unc."),
        Column("pl_rade", F64, "R_earth", "Earth Radius", "Planet Radius"),
        Column("pl_radeerr1", F64, "R_earth", "Earth Radius", "Planet Radius Upper Unc."),
        Column("pl_radeerr2", F64, "R_earth", "Earth Radius", "Planet Radius Lower Unc."),
        Column("rastr", STR, "", "sexagesimal", "RA"),
        Column("ra", F64, "deg", "deg", "RA"),
        Column("decstr", STR, "", "sexagesimal", "Dec"),
        Column("dec", F64, "deg", "deg", "Dec"),
        # derived from epic_hostname ("EPIC 211436265"): the K2 target's EPIC number
        Column("epic", I64, "", "", "EPIC ID (from epic_hostname)"),
    ),
)

#: Every catalog, by its short name (the order of ingest and of the report).
CATALOGS: dict[str, CatalogSpec] = {spec.name: spec for spec in (KOI, TOI, K2)}
