"""The manifest fits_to_zarr keeps in a store's root attributes, and the one way to read it.

This is the contract between the producer (:mod:`astropipe.zarrcube.writer`) and its readers
(:mod:`astropipe.validation.cubes`): nobody else parses the ``astropipe`` attribute. It holds

* ``collection`` and ``layout`` (kind, Zarr format, chunks, compressor: what fixes the bytes);
* ``static``: the axes every time step shares (frequencies, Stokes, unit) and the pixel grid;
* ``timesteps``: per time step its key, time (MJD), input files with their SHA-256 (None until
  the step is on disk), the header corrections applied and, for a zenith-phased (``lwa``)
  series, ``wcs``: the step's own WCS cards (its phase centre, ``CRVAL1``/``CRVAL2``) that
  complete the shared pixel grid of ``static["grid"]`` (see :meth:`Manifest.step_wcs`);
* ``chunk_sha256``: the SHA-256 of every chunk object written, by store-relative key
  (``SKY/c/0/0/0/1/0``), so a flipped or truncated chunk is found before anything decodes it;
* ``provenance``: input hashes, the parameters that define the content, the package version.

Everything is sorted and free of wall-clock time, so the store's bytes (and its DVC hash) are a
function of its inputs and configuration alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from astropipe.errors import InputFileError

__all__ = [
    "ATTR",
    "COMPLETE",
    "IMAGE_VARS",
    "TimeStep",
    "Manifest",
    "read_manifest",
    "root_attrs",
]

#: root attribute holding the manifest
ATTR = "astropipe"
#: per-time-step array: 1 once every array of the step is written
COMPLETE = "step_complete"
#: the image variable of each collection kind
IMAGE_VARS: dict[str, str] = {"lwa": "SKY", "ccd": "SCI"}
#: files of a store that are metadata, not chunk objects
METADATA_NAMES = frozenset({"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"})


@dataclass(frozen=True)
class TimeStep:
    """One time step as recorded: key, time, input files → SHA-256, header corrections."""

    key: str
    time_mjd: float
    files: dict[str, str | None]
    corrections: tuple[str, ...] = ()
    wcs: dict[str, Any] = field(default_factory=dict)  # per-step WCS cards (phase centre)

    @property
    def hashed(self) -> bool:
        """True when every input file has its checksum (the step was written completely)."""
        return bool(self.files) and all(self.files.values())

    def with_files(self, files: Mapping[str, str | None]) -> TimeStep:
        """A copy with ``files`` (sorted)."""
        return replace(self, files=dict(sorted(files.items())))

    def to_json(self) -> dict[str, Any]:
        """JSON form (the order of keys is part of the store's bytes)."""
        doc: dict[str, Any] = {
            "key": self.key,
            "time_mjd": self.time_mjd,
            "files": dict(sorted(self.files.items())),
            "corrections": list(self.corrections),
        }
        if self.wcs:  # only series whose steps differ in WCS (lwa) carry it
            doc["wcs"] = dict(sorted(self.wcs.items()))
        return doc


@dataclass(frozen=True)
class Manifest:
    """The typed manifest of a fits_to_zarr store (see the module docstring)."""

    collection: str
    layout: dict[str, Any]
    static: dict[str, Any]
    timesteps: tuple[TimeStep, ...]
    chunk_sha256: dict[str, str] = field(default_factory=dict)
    header_corrections: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The collection kind (``lwa`` or ``ccd``)."""
        return str(self.layout.get("kind", ""))

    @property
    def image_var(self) -> str:
        """Name of the image variable (``SKY`` for lwa, ``SCI`` for ccd)."""
        return IMAGE_VARS.get(self.kind, "SCI")

    @property
    def time_chunk(self) -> int:
        """Time steps per chunk of the time-dependent arrays."""
        return int(self.layout.get("chunks", {}).get("time", 1))

    def step_wcs(self, index: int) -> dict[str, Any]:
        """The full WCS cards of time step ``index``: the shared grid plus the step's own.

        Evaluate pixel RA/Dec of that step with
        ``grid.sky_coordinates(Grid(shape, manifest.step_wcs(i)), xs, ys)``.
        """
        grid = dict((self.static.get("grid") or {}).get("wcs") or {})
        return dict(sorted({**grid, **self.timesteps[index].wcs}.items()))

    @property
    def input_files(self) -> int:
        """Number of input files recorded over all time steps."""
        return sum(len(s.files) for s in self.timesteps)

    def to_json(self) -> dict[str, Any]:
        """The value of the ``astropipe`` root attribute."""
        return {
            "collection": self.collection,
            "layout": self.layout,
            "static": self.static,
            "header_corrections": list(self.header_corrections),
            "timesteps": [s.to_json() for s in self.timesteps],
            "chunk_sha256": dict(sorted(self.chunk_sha256.items())),
            "provenance": self.provenance,
        }

    @classmethod
    def from_json(cls, doc: Any, where: str) -> Manifest:
        """Parse the ``astropipe`` attribute; InputFileError naming the key that is wrong."""
        try:
            if not isinstance(doc, Mapping):
                raise TypeError(f"expected a mapping, found {type(doc).__name__}")
            steps = tuple(
                TimeStep(
                    key=str(s["key"]),
                    time_mjd=float(s["time_mjd"]),
                    files={str(k): (None if v is None else str(v)) for k, v in s["files"].items()},
                    corrections=tuple(str(c) for c in s.get("corrections", ())),
                    wcs={str(k): v for k, v in dict(s.get("wcs") or {}).items()},
                )
                for s in doc["timesteps"]
            )
            chunks = doc.get("chunk_sha256") or {}
            return cls(
                collection=str(doc.get("collection", "")),
                layout=dict(doc["layout"]),
                static=dict(doc.get("static") or {}),
                timesteps=steps,
                chunk_sha256={str(k): str(v) for k, v in dict(chunks).items()},
                header_corrections=tuple(str(c) for c in doc.get("header_corrections", ())),
                provenance=dict(doc.get("provenance") or {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputFileError(
                f"{where}: the {ATTR!r} manifest is damaged ({type(exc).__name__}: {exc}); "
                f"restore the store with `dvc checkout {where}` or rebuild it (zarr.rebuild=true)."
            ) from None


def _root_doc(store: Path) -> tuple[dict[str, Any], int]:
    """The root attributes and the Zarr format, read straight from the metadata documents."""
    v3, v2 = store / "zarr.json", store / ".zattrs"
    if v3.is_file():
        doc = json.loads(v3.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise ValueError("zarr.json is not a JSON object")
        return dict(doc.get("attributes") or {}), int(doc.get("zarr_format", 3))
    if (store / ".zgroup").is_file():
        attrs = json.loads(v2.read_text(encoding="utf-8")) if v2.is_file() else {}
        if not isinstance(attrs, dict):
            raise ValueError(".zattrs is not a JSON object")
        return attrs, 2
    raise FileNotFoundError("no zarr.json or .zgroup")


def root_attrs(store: str | os.PathLike[str]) -> dict[str, Any]:
    """The root attributes of a store; InputFileError naming the store when unreadable."""
    store = Path(store)
    try:
        return _root_doc(store)[0]
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputFileError(
            f"{store.as_posix()}: not a readable Zarr store ({first}); restore it with "
            "`dvc checkout` or rebuild it (zarr.rebuild=true)."
        ) from None


def read_manifest(store: str | os.PathLike[str]) -> Manifest | None:
    """The manifest of ``store``; None when it has none (not a store fits_to_zarr wrote).

    Only the root metadata document is read (JSON): nothing is decoded, so this works on a
    store whose chunks are damaged.

    Raises
    ------
    InputFileError
        When the root metadata cannot be read or the manifest is malformed.
    """
    store = Path(store)
    if not (store / "zarr.json").is_file() and not (store / ".zgroup").is_file():
        return None  # not a Zarr group at all
    doc = root_attrs(store).get(ATTR)
    if doc is None:
        return None
    return Manifest.from_json(doc, store.as_posix())
