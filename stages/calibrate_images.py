"""DVC stage calibrate_images: raw CCD frames -> masters + calibrated science (see dvc.yaml)."""

from astropipe.calibration.stage import run
from astropipe.config import load_params
from astropipe.stage_main import stage_main

if __name__ == "__main__":
    stage_main(lambda: run(load_params()))
