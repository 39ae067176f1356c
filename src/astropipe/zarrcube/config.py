"""Typed schema of the ``zarr`` config group (conf/zarr/default.yaml)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from astropipe.config import choice, from_mapping
from astropipe.errors import ConfigError

__all__ = ["ChunksConfig", "CompressorConfig", "CollectionConfig", "ZarrConfig", "KINDS"]

#: Collection kinds: how files are grouped into time steps and which variables they give.
KINDS = ("lwa", "ccd")
COMPRESSORS = ("zstd", "blosc", "gzip", "none")
BLOSC_CNAMES = ("lz4", "lz4hc", "zstd", "zlib", "blosclz")
BLOSC_SHUFFLES = ("noshuffle", "shuffle", "bitshuffle")


@dataclass(frozen=True)
class ChunksConfig:
    """Chunk shape: ``time`` steps per chunk, ``frequency`` channels (-1 = all), sky tile."""

    time: int = 1
    frequency: int = -1
    sky: int = 512

    def validate(self, where: str) -> ChunksConfig:
        """Check that every size is a positive integer (``frequency`` may be -1)."""
        if self.time < 1 or self.sky < 1 or (self.frequency < 1 and self.frequency != -1):
            raise ConfigError(
                f"{where}: chunk sizes must be positive (frequency may be -1 for all), "
                f"found {self}; e.g. time=1, frequency=-1, sky=512."
            )
        return self


@dataclass(frozen=True)
class CompressorConfig:
    """The compressor applied to every chunk."""

    name: str = "blosc"
    level: int = 1
    cname: str = "zstd"
    shuffle: str = "shuffle"

    def validate(self, where: str) -> CompressorConfig:
        """Check the compressor name and its options against the valid choices."""
        choice(self.name, COMPRESSORS, where=f"{where}.name")
        if self.name == "blosc":
            choice(self.cname, BLOSC_CNAMES, where=f"{where}.cname")
            choice(self.shuffle, BLOSC_SHUFFLES, where=f"{where}.shuffle")
        return self


@dataclass(frozen=True)
class CollectionConfig:
    """One collection: where its FITS files are and where its store goes."""

    kind: str
    input_dir: str
    glob: str
    output: str
    metrics: str

    def validate(self, where: str) -> CollectionConfig:
        """Check the collection kind."""
        choice(self.kind, KINDS, where=f"{where}.kind")
        return self


@dataclass(frozen=True)
class ZarrConfig:
    """The ``zarr`` section of params.yaml."""

    collections: dict[str, CollectionConfig] = field(default_factory=dict)
    chunks: ChunksConfig = field(default_factory=ChunksConfig)
    zarr_format: int = 3
    compressor: CompressorConfig = field(default_factory=CompressorConfig)
    rebuild: bool = False
    read_workers: int = 2

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ZarrConfig:
        """Build from the full params mapping (its ``zarr`` section) and validate it."""
        section = dict(params.get("zarr") or {})
        raw = section.pop("collections", None) or {}
        if not isinstance(raw, Mapping):
            raise ConfigError(
                f"zarr.collections: expected a mapping of name -> collection, found {raw!r}."
            )
        cfg = from_mapping(cls, section, where="zarr")
        cols = {
            name: from_mapping(CollectionConfig, c, where=f"zarr.collections.{name}").validate(
                f"zarr.collections.{name}"
            )
            for name, c in sorted(raw.items())
        }
        if cfg.zarr_format not in (2, 3):
            raise ConfigError(f"zarr.zarr_format: {cfg.zarr_format!r} is not valid; choose 2 or 3.")
        if cfg.read_workers < 1:
            raise ConfigError(f"zarr.read_workers: must be >= 1, found {cfg.read_workers}.")
        cfg.chunks.validate("zarr.chunks")
        cfg.compressor.validate("zarr.compressor")
        return cls(
            collections=cols,
            chunks=cfg.chunks,
            zarr_format=cfg.zarr_format,
            compressor=cfg.compressor,
            rebuild=bool(cfg.rebuild),
            read_workers=cfg.read_workers,
        )

    def collection(self, name: str) -> CollectionConfig:
        """Return collection ``name`` or raise a ConfigError listing the configured ones."""
        if name not in self.collections:
            raise ConfigError(
                f"zarr.collections: no collection {name!r}; "
                f"choose one of {sorted(self.collections)}."
            )
        return self.collections[name]
