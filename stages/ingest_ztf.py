"""DVC stage ingest_ztf: ZTF alert packets + DR light curves -> data/raw/ztf/ (see dvc.yaml)."""

from astropipe.config import load_params
from astropipe.stage_main import stage_main
from astropipe.ztf.stage import run

if __name__ == "__main__":
    stage_main(lambda: run(load_params()))
