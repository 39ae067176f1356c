"""DVC stage ingest_mast: MAST CAOM observations + products -> data/raw/mast/ (see dvc.yaml)."""

import _env  # noqa: F401  (first: a python without the project gets a hint)
from astropipe.config import load_params
from astropipe.mast.stage import run
from astropipe.stage_main import stage_main

if __name__ == "__main__":
    stage_main(lambda: run(load_params()))
