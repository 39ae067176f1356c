"""DVC stage validate: contracts on the ZTF tables, calibrated frames and Zarr cubes (dvc.yaml)."""

from astropipe.config import load_params
from astropipe.stage_main import stage_main
from astropipe.validation.stage import run

if __name__ == "__main__":
    stage_main(lambda: run(load_params()))
