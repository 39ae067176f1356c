"""Typed schema of the ``zarr`` config group (conf/zarr/default.yaml)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator

from astropipe.configtypes import NonNegativeInt, PositiveInt, from_mapping
from astropipe.errors import ConfigError

__all__ = ["ChunksConfig", "CompressorConfig", "CollectionConfig", "ZarrConfig", "KINDS"]

Kind = Literal["lwa", "ccd"]
Compressor = Literal["zstd", "blosc", "gzip", "none"]
BloscCname = Literal["lz4", "lz4hc", "zstd", "zlib", "blosclz"]
BloscShuffle = Literal["noshuffle", "shuffle", "bitshuffle"]
#: Collection kinds: how files are grouped into time steps and which variables they give.
KINDS: tuple[str, ...] = get_args(Kind)
COMPRESSORS: tuple[str, ...] = get_args(Compressor)
BLOSC_CNAMES: tuple[str, ...] = get_args(BloscCname)
BLOSC_SHUFFLES: tuple[str, ...] = get_args(BloscShuffle)
#: Valid compression levels per compressor (zstd accepts more, these are the useful ones).
LEVELS = {"zstd": (1, 22), "blosc": (0, 9), "gzip": (1, 9), "none": (0, 0)}


def _all_or_positive(n: int) -> int:
    if n < 1 and n != -1:
        raise ValueError("a positive integer, or -1 for all in one chunk")
    return n


#: Chunk length along an axis: positive, or -1 for the whole axis.
ChunkLength = Annotated[int, AfterValidator(_all_or_positive)]


@dataclass(frozen=True)
class ChunksConfig:
    """Chunk shape: ``time`` steps per chunk, ``frequency`` channels (-1 = all), sky tile."""

    time: PositiveInt = 1
    frequency: ChunkLength = -1
    sky: PositiveInt = 512

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

    name: Compressor = "blosc"
    level: NonNegativeInt = 1
    cname: BloscCname = "zstd"
    shuffle: BloscShuffle = "shuffle"

    def validate(self, where: str) -> CompressorConfig:
        """Check the level against the range of the chosen compressor."""
        lo, hi = LEVELS[self.name]
        if self.name != "none" and not lo <= self.level <= hi:
            raise ConfigError(
                f"{where}.level: {self.level} is not valid for {self.name}; expected {lo} to {hi}."
            )
        return self


@dataclass(frozen=True)
class CollectionConfig:
    """One collection: where its FITS files are and where its store goes."""

    kind: Kind
    input_dir: str
    glob: str
    output: str
    metrics: str

    def validate(self, where: str) -> CollectionConfig:
        """Nothing beyond the declared types (kept for callers); return self."""
        return self


@dataclass(frozen=True)
class ZarrConfig:
    """The ``zarr`` section of params.yaml."""

    collections: dict[str, CollectionConfig] = field(default_factory=dict)
    chunks: ChunksConfig = field(default_factory=ChunksConfig)
    zarr_format: Literal[2, 3] = 3
    compressor: CompressorConfig = field(default_factory=CompressorConfig)
    rebuild: bool = False
    read_workers: PositiveInt = 2

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
        if not isinstance(cfg.rebuild, bool):  # "no", "false", "off" are not false: refuse them
            raise ConfigError(
                f"zarr.rebuild: expected true or false, found {cfg.rebuild!r}; set "
                "zarr.rebuild=true to replace the store, false to extend it."
            )
        cfg.chunks.validate("zarr.chunks")
        cfg.compressor.validate("zarr.compressor")
        return cls(
            collections=cols,
            chunks=cfg.chunks,
            zarr_format=cfg.zarr_format,
            compressor=cfg.compressor,
            rebuild=cfg.rebuild,
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
