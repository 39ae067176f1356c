"""DVC stage ingest_catalogs: KOI/TOI/K2 catalogs + objects link -> data/raw/catalogs/."""

import _env  # noqa: F401  (first: a python without the project gets a hint)
from astropipe.catalogs.stage import run
from astropipe.config import load_params
from astropipe.stage_main import stage_main

if __name__ == "__main__":
    stage_main(lambda: run(load_params()))
