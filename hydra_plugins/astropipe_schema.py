"""Hydra plugin module: loads astropipe's schema check into any Hydra composition of conf/.

DVC's Hydra integration (``dvc exp run -S ...``) composes params.yaml itself; before it does,
it scans the ``hydra_plugins`` package on its plugins path (the repository root by default,
``dvc config hydra.plugins_path``), which imports this module. Importing it registers the
``${astropipe_schema:}`` resolver that conf/config.yaml's ``checked_by`` key calls, so DVC's
composition is checked against the typed schema exactly like `make params` and the
``astropipe`` command (see src/astropipe/schema.py). Without it, composition fails on the
unknown resolver instead of writing unchecked params.
"""

from astropipe.schema import register_resolver

register_resolver()
