"""fits_to_zarr's own chunk encoder writes the bytes zarr writes (every codec, both formats)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from astropipe.zarrcube import store as S
from astropipe.zarrcube.config import CompressorConfig
from astropipe.zarrcube.encode import ChunkSpec, Unsupported, write_chunk

COMPRESSORS = [
    CompressorConfig(name="blosc", level=1, cname="zstd", shuffle="shuffle"),
    CompressorConfig(name="blosc", level=5, cname="lz4", shuffle="bitshuffle"),
    CompressorConfig(name="blosc", level=3, cname="zlib", shuffle="noshuffle"),
    CompressorConfig(name="zstd", level=3),
    CompressorConfig(name="gzip", level=6),
    CompressorConfig(name="none", level=0),
]
#: (shape, chunks, dtype, fill): a tiled image with edge chunks, 1-d per-step values, a string
ARRAYS = [
    ((2, 3, 1, 40, 50), (1, 3, 1, 16, 16), "float32", np.nan),
    ((2, 4, 40, 50), (1, 2, 16, 32), "uint16", None),
    ((2, 5), (1, 5), "float64", np.nan),
    ((3,), (1,), "uint8", None),
    ((3,), (1,), "<U16", ""),
]


def _array(root: Path, fmt: int, comp: CompressorConfig, shape, chunks, dtype, fill) -> zarr.Array:
    codec = S.compressor(comp, fmt)
    with S.quiet_zarr():
        return zarr.create_array(
            root,
            name="v",
            shape=shape,
            chunks=chunks,
            dtype=dtype,
            fill_value=fill,
            compressors=None if codec is None else [codec],
            zarr_format=fmt,
            write_data=True,
        )


def _values(shape: tuple[int, ...], dtype: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype.startswith("<U"):
        return np.array([f"V{i}" * (i + 1) for i in range(int(np.prod(shape)))]).reshape(shape)
    if dtype.startswith("uint"):
        return rng.integers(0, 200, shape).astype(dtype)
    return (rng.normal(0, 1, shape) * 1e3).round(1).astype(dtype)


@pytest.mark.parametrize("fmt", [2, 3])
@pytest.mark.parametrize("comp", COMPRESSORS, ids=lambda c: f"{c.name}-{c.cname}-{c.level}")
def test_chunks_are_the_bytes_zarr_writes(tmp_path: Path, fmt: int, comp) -> None:
    for n, (shape, chunks, dtype, fill) in enumerate(ARRAYS):
        values = _values(shape, dtype, n)
        ref = _array(tmp_path / f"ref{n}", fmt, comp, shape, chunks, dtype, fill)
        with S.quiet_zarr(), zarr.config.set(S.WRITE_CONFIG):
            ref[...] = values
        ours = _array(tmp_path / f"ours{n}", fmt, comp, shape, chunks, dtype, fill)
        spec = ChunkSpec.of(ours)
        root = tmp_path / f"ours{n}"
        grid = [range(-(-s // c)) for s, c in zip(shape, chunks, strict=True)]
        for coords in np.ndindex(*(len(g) for g in grid)):
            region = tuple(
                slice(i * c, min((i + 1) * c, s))
                for i, c, s in zip(coords, chunks, shape, strict=True)
            )
            key = spec.key(coords)
            digest = write_chunk(root, key, spec.encode(values[region]))
            got = (root / key).read_bytes()
            assert got == (tmp_path / f"ref{n}" / key).read_bytes(), (dtype, key)
            assert digest == __import__("hashlib").sha256(got).hexdigest()
        with S.quiet_zarr():
            back = zarr.open_array(root / "v", mode="r")[...]
        np.testing.assert_array_equal(back, values)
        assert not list(root.rglob("*.partial"))


def test_other_codecs_are_left_to_zarr(tmp_path: Path) -> None:
    from zarr.codecs import BytesCodec, TransposeCodec

    arr = zarr.create_array(
        tmp_path / "t", shape=(4, 4), chunks=(2, 2), dtype="float32",
        serializer=BytesCodec(), filters=[TransposeCodec(order=(1, 0))], compressors=None,
    )  # fmt: skip
    with pytest.raises(Unsupported):
        ChunkSpec.of(arr)
