"""DVC stage fits_to_zarr: ``python stages/fits_to_zarr.py <collection>`` (see conf/zarr)."""

import sys

import _env  # noqa: F401  (first: a python without the project gets a hint)
from astropipe.config import load_params
from astropipe.stage_main import stage_main
from astropipe.zarrcube.stage import run

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python stages/fits_to_zarr.py <collection>  (a key of zarr.collections)")
    stage_main(lambda: run(load_params(), collection=sys.argv[1]))
