"""Data contracts: great-expectations suites for the alerts, light-curve and feature tables.

``suites`` builds the contracts in code, ``runner`` runs them in an ephemeral GX context,
``report`` writes the summary metric and the Markdown data docs, ``stage`` is the DVC stage.
"""

import os

# No telemetry: set before great_expectations is imported anywhere below this package.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
