"""DVC stage ingest_catalogs: KOI/TOI/K2 catalogs + objects link -> data/raw/catalogs/ (dvc.yaml)."""

from astropipe.catalogs.stage import run
from astropipe.config import load_params
from astropipe.stage_main import stage_main

if __name__ == "__main__":
    stage_main(lambda: run(load_params()))
