"""Data contracts: great-expectations suites for every artifact of the pipeline.

``suites`` builds the table contracts (alerts, light curves, features) in code; ``frames`` and
``cubes`` summarise calibrated FITS frames and Zarr stores into small tables (one row per frame,
per cube time step) and hold their contracts; ``runner`` runs a contract in an ephemeral GX
context, ``report`` writes the summary metric and the Markdown data docs, ``stage`` is the DVC
stage.
"""

import logging
import os

# No telemetry: set before great_expectations is imported anywhere below this package.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# GX logs hundreds of INFO lines while importing (API-docs registration) and while creating a
# context; under the `astropipe` command logging is already at INFO by then. Keep its warnings.
logging.getLogger("great_expectations").setLevel(logging.WARNING)
