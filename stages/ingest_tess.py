"""DVC stage ingest_tess: TESS/Kepler/K2 light-curve FITS -> data/raw/tess/ (see dvc.yaml)."""

import _env  # noqa: F401  (first: a python without the project gets a hint)
from astropipe.config import load_params
from astropipe.stage_main import stage_main
from astropipe.tess.stage import run

if __name__ == "__main__":
    stage_main(lambda: run(load_params()))
