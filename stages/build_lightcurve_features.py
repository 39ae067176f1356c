"""DVC stage build_lightcurve_features: light curves -> data/processed/features.parquet."""

import _env  # noqa: F401  (first: a python without the project gets a hint)
from astropipe.config import load_params
from astropipe.features.stage import run
from astropipe.stage_main import stage_main

if __name__ == "__main__":
    stage_main(lambda: run(load_params()))
