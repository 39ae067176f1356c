"""DVC stage validate: contracts on the ZTF tables, calibrated frames and Zarr cubes (dvc.yaml)."""

import _env  # noqa: F401  (first: a python without the project gets a hint)
from astropipe.config import load_params
from astropipe.stage_main import stage_main
from astropipe.validation.stage import run

if __name__ == "__main__":
    stage_main(lambda: run(load_params()))
