"""The IRSA ZTF light-curve service (``nph_light_curves``), live.

Query parameters follow IRSA's "ZTF Lightcurve Queries" API
(https://irsa.ipac.caltech.edu/docs/program_interface/ztf_lightcurve_api.html):

- ``ID=<oid>``: one request per configured object id. BANDNAME is not accepted together with
  ID, so bands are filtered here instead;
- ``POS=CIRCLE <ra> <dec> <radius>`` (degrees, radius in (0, 0.1667]) with
  ``BANDNAME=g,r,i`` (IRSA's band names; ``zg`` → ``g``): one cone request;
- ``TIME=<start> <end>`` (MJD), ``BAD_CATFLAGS_MASK=<int>``, ``FORMAT=CSV``.

The CSV answer has one row per epoch in the documented column order (:data:`IRSA_COLUMNS`):
``oid, expid, hjd, mjd, mag, magerr, catflags, filtercode, ra, dec, chi, sharp, filefracday,
field, ccdid, qid, limitmag, magzp, magzprms, clrcoeff, clrcounc, exptime, airmass,
programid``. ``mjd`` is the MJD (UTC) at the start of the exposure, the convention of the
common light-curve frame; ``hjd`` (a full JD, mid-exposure, heliocentric) is not used.

A body that is not such a table (an HTML page, missing columns, a ragged or truncated last
line, an empty answer) raises :class:`~astropipe.errors.ServiceResponseError` naming the URL;
nothing is returned from it, so nothing is written.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import numpy as np
import pandas as pd
import requests

from astropipe.errors import ConfigError, ServiceResponseError
from astropipe.lightcurve import LIGHTCURVE_SCHEMA, deduplicate
from astropipe.sources.http import Fetched, get_text, load_token, make_session, safe_url
from astropipe.ztf.config import IRSA_MAX_RADIUS_DEG, IrsaConfig

__all__ = [
    "IRSA_COLUMNS",
    "REQUIRED_COLUMNS",
    "MAX_RADIUS_DEG",
    "irsa_query_params",
    "parse_lightcurve_csv",
    "fetch_lightcurves",
]

log = logging.getLogger(__name__)

#: Column order of an ``nph_light_curves`` CSV answer.
IRSA_COLUMNS = (
    "oid", "expid", "hjd", "mjd", "mag", "magerr", "catflags", "filtercode", "ra", "dec",
    "chi", "sharp", "filefracday", "field", "ccdid", "qid", "limitmag", "magzp", "magzprms",
    "clrcoeff", "clrcounc", "exptime", "airmass", "programid",
)  # fmt: skip

#: Columns the common frame is built from; an answer without them is refused.
REQUIRED_COLUMNS = ("oid", "mjd", "mag", "magerr", "catflags", "filtercode", "ra", "dec")

#: IRSA limits cone radii to (0, 0.1667] degrees.
MAX_RADIUS_DEG = IRSA_MAX_RADIUS_DEG

_BANDNAME = {"zg": "g", "zr": "r", "zi": "i"}


def _fmt(x: float) -> str:
    return repr(float(x))


def irsa_query_params(cfg: IrsaConfig) -> list[dict[str, str]]:
    """The requests a live run makes: one per object id, or one cone.

    Parameters
    ----------
    cfg
        ``ztf.irsa``; validated here (bounded query, known bands, radius within IRSA's limit).

    Returns
    -------
    list of dict
        Query parameters per request, in request order (JSON-serialisable; no token: the
        token travels in a header).
    """
    cfg.validate()
    common: dict[str, str] = {}
    if cfg.mjd_range is not None:
        common["TIME"] = f"{_fmt(cfg.mjd_range[0])} {_fmt(cfg.mjd_range[1])}"
    common["BAD_CATFLAGS_MASK"] = str(int(cfg.bad_catflags_mask))
    common["FORMAT"] = "CSV"
    if cfg.ra is not None:
        if cfg.radius > MAX_RADIUS_DEG:
            raise ConfigError(
                f"ztf.irsa.radius: {cfg.radius} deg exceeds IRSA's cone limit of "
                f"{MAX_RADIUS_DEG} deg; use a smaller radius or several cones."
            )
        bandname = ",".join(_BANDNAME[b] for b in cfg.filters)
        cone = f"CIRCLE {_fmt(cfg.ra)} {_fmt(cfg.dec)} {_fmt(cfg.radius)}"
        return [{"POS": cone, "BANDNAME": bandname, **common}]
    return [{"ID": str(int(oid)), **common} for oid in cfg.ids]


def _int_column(values: pd.Series, name: str, where: str) -> np.ndarray:
    """Integers that may arrive as decimal or as ``0x`` hex (seen for catflags)."""
    if pd.api.types.is_integer_dtype(values):
        return values.to_numpy(dtype="int64")
    if values.isna().any():
        raise ServiceResponseError(
            f"{where}: column {name!r} has empty values; the answer is garbled; retry."
        )
    text = values.astype(str).str.strip()
    try:
        return pd.to_numeric(text, errors="raise").to_numpy(dtype="int64")
    except (ValueError, TypeError):
        pass
    try:
        return text.map(lambda v: int(v, 0)).to_numpy(dtype="int64")
    except ValueError:
        raise ServiceResponseError(
            f"{where}: column {name!r} holds non-integer values; the answer is garbled; retry."
        ) from None


def parse_lightcurve_csv(
    body: str, *, where: str, bands: list[str] | tuple[str, ...] = ("zg", "zr", "zi"),
    bad_catflags_mask: int = 0,
) -> pd.DataFrame:  # fmt: skip
    """Parse an ``nph_light_curves`` CSV answer into the common light-curve frame.

    Parameters
    ----------
    body
        The CSV text.
    where
        The request URL (credential-free), used in error messages.
    bands
        Keep only these filter codes.
    bad_catflags_mask
        Drop epochs with ``catflags & mask != 0`` (the service should already have).

    Returns
    -------
    pandas.DataFrame
        Common columns with ``source="irsa"``; ``limiting_mag`` from ``limitmag``.

    Raises
    ------
    ServiceResponseError
        Missing columns, a ragged line (a truncated body), unparseable values.
    """
    lines = body.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ServiceResponseError(f"{where}: empty answer where a CSV table was expected; retry.")
    # IRSA may precede the table with '#'/'\\' comment lines.
    lines = [ln for ln in lines if not ln.startswith(("#", "\\"))]
    header = [h.strip() for h in lines[0].split(",")] if lines else []
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ServiceResponseError(
            f"{where}: the answer is not an nph_light_curves CSV table: missing column(s) "
            f"{missing} (header starts {lines[0][:80]!r}); check FORMAT=CSV and the service docs."
        )
    commas = pd.Series(lines).str.count(",").to_numpy()
    ragged = np.flatnonzero(commas != commas[0])
    if ragged.size:
        first = int(ragged[0])
        last = " (the last line: the body was cut short)" if first == len(lines) - 1 else ""
        raise ServiceResponseError(
            f"{where}: line {first + 1} has {commas[first] + 1} fields, the header "
            f"{commas[0] + 1}{last}; the answer is truncated or garbled; nothing was "
            "written; retry."
        )
    try:
        raw = pd.read_csv(
            io.StringIO("\n".join(lines)),
            dtype={"oid": str, "filtercode": str},
            skipinitialspace=True,
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise ServiceResponseError(f"{where}: unparseable CSV ({exc}); retry.") from None
    numeric = ["mjd", "mag", "magerr", "ra", "dec"] + (["limitmag"] if "limitmag" in raw else [])
    for col in numeric:
        raw[col] = pd.to_numeric(raw[col], errors="coerce")
    if raw[["mjd", "ra", "dec"]].isna().to_numpy().any() or raw["oid"].isna().any():
        raise ServiceResponseError(
            f"{where}: empty or non-numeric oid/mjd/ra/dec values; the answer is garbled; retry."
        )
    catflags = _int_column(raw["catflags"], "catflags", where)
    band = raw["filtercode"].astype(str).str.strip().to_numpy(dtype=object)
    unknown = sorted(set(band) - set(_BANDNAME))
    if unknown:
        raise ServiceResponseError(
            f"{where}: unknown filtercode value(s) {unknown[:5]}; expected zg, zr, zi."
        )
    keep = np.isin(band, list(bands)) & ((catflags & int(bad_catflags_mask)) == 0)
    if len(keep) and not keep.all():
        log.info("%s: dropped %d of %d rows (band or catflags)", where, (~keep).sum(), len(keep))
    limitmag = raw["limitmag"].to_numpy(dtype="float64") if "limitmag" in raw else np.nan
    frame = pd.DataFrame(
        {
            "object_id": raw["oid"].astype(str).str.strip().to_numpy(dtype=object),
            "survey": "ZTF",
            "source": "irsa",
            "band": band,
            "mjd": raw["mjd"].to_numpy(dtype="float64"),
            "mag": raw["mag"].to_numpy(dtype="float64"),
            "mag_err": raw["magerr"].to_numpy(dtype="float64"),
            "flux": np.nan,
            "flux_err": np.nan,
            "limiting_mag": limitmag,
            "is_upper_limit": False,
            "flags": catflags,
            "ra": raw["ra"].to_numpy(dtype="float64"),
            "dec": raw["dec"].to_numpy(dtype="float64"),
        }
    )
    return frame.loc[keep, list(LIGHTCURVE_SCHEMA.names)].reset_index(drop=True)


def fetch_lightcurves(
    cfg: IrsaConfig,
    *,
    session: requests.Session | None = None,
    limit: int | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run the configured IRSA query and return the light curves and their provenance.

    Parameters
    ----------
    cfg
        ``ztf.irsa`` (URL, ids or cone, filters, MJD range, catflags mask, retries, timeouts,
        name of the token variable).
    session
        A session from :func:`astropipe.sources.http.make_session`; by default one is built
        from ``cfg`` with the token read from ``cfg.token_env`` (environment or ``.env``).
    limit
        Keep at most this many rows (after sorting); overrides ``cfg.limit``.

    Returns
    -------
    frame : pandas.DataFrame
        Common light-curve columns, ``source="irsa"``, deduplicated on (object_id, mjd, band),
        sorted by (object_id, band, mjd).
    provenance : dict
        ``{"query": {"url", "requests": [params...]}, "responses": {request URL: sha256 of
        the body}}``; no token anywhere.

    Raises
    ------
    ServiceError
        The service could not be reached or kept failing after the retries.
    ServiceResponseError
        An answer was not a light-curve table (see module docstring).
    """
    queries = irsa_query_params(cfg)
    own = session is None
    if session is None:
        session = make_session(
            retries=cfg.retries,
            backoff_factor=cfg.backoff_factor,
            token=load_token(cfg.token_env),
            max_retry_after=cfg.max_retry_after,
        )
    frames: list[pd.DataFrame] = []
    responses: dict[str, str] = {}
    try:
        for params in queries:
            fetched: Fetched = get_text(
                session, cfg.url, params, timeout=cfg.timeout, expect="csv", deadline=cfg.deadline
            )
            frames.append(
                parse_lightcurve_csv(
                    fetched.text,
                    where=fetched.url,
                    bands=cfg.filters,
                    bad_catflags_mask=cfg.bad_catflags_mask,
                )
            )
            responses[fetched.url] = fetched.sha256
    finally:
        if own:
            session.close()
    frame = deduplicate(pd.concat(frames, ignore_index=True))
    frame = frame.sort_values(["object_id", "band", "mjd"], kind="mergesort").reset_index(drop=True)
    limit = cfg.limit if limit is None else limit
    if limit is not None and len(frame) > limit:
        log.info("keeping the first %d of %d IRSA rows (limit)", limit, len(frame))
        frame = frame.head(limit)
    log.info(
        "IRSA: %d rows of %d objects from %d request(s)",
        len(frame),
        frame["object_id"].nunique(),
        len(queries),
    )
    query = {"url": safe_url(cfg.url), "requests": queries}
    return frame, {"query": query, "responses": responses}
