"""The typed schema of the whole configuration: one ``*Config`` dataclass per conf/ group.

:func:`check_params` checks a composed configuration (or a loaded params.yaml) against every
group's schema. It also runs *inside* Hydra's composition: ``conf/config.yaml`` ends with
``checked_by: ${astropipe_schema:}``, an interpolation resolved by :func:`_resolve`, so every
composition that resolves interpolations is checked before params.yaml is written: `make
params`, the ``astropipe`` command, and DVC's Hydra integration on ``dvc exp run -S ...`` (DVC
loads the resolver through ``hydra_plugins/astropipe_schema.py`` at the repository root, its
default Hydra plugins path). A composition without the resolver fails instead of going
unchecked.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from astropipe.errors import ConfigError

__all__ = ["GROUPS", "CHECK_KEY", "RESOLVER", "check_params", "register_resolver", "group_class"]

#: conf/ group → the dataclass that is its schema (``module:Class``; imported on first use).
GROUPS: dict[str, str] = {
    "ztf": "astropipe.ztf.config:ZtfConfig",
    "mast": "astropipe.mast.config:MastConfig",
    "tess": "astropipe.tess.config:TessConfig",
    "catalogs": "astropipe.catalogs.config:CatalogsConfig",
    "features": "astropipe.features.stage:FeaturesConfig",
    "calibration": "astropipe.calibration.config:CalibrationConfig",
    "zarr": "astropipe.zarrcube.config:ZarrConfig",
    "validation": "astropipe.validation.config:ValidationConfig",
    "compute": "astropipe.compute:ComputeConfig",
}
#: Top-level key of conf/config.yaml whose value is the schema check (see module docstring).
CHECK_KEY = "checked_by"
#: Name of the OmegaConf resolver that runs the check.
RESOLVER = "astropipe_schema"
#: What the check resolves to in params.yaml.
CHECKED = "astropipe.schema"


def group_class(group: str) -> type:
    """Return the schema dataclass of conf/ group ``group``."""
    module, name = GROUPS[group].split(":")
    cls: type = getattr(importlib.import_module(module), name)
    return cls


def check_params(params: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Check every group of ``params`` against its schema; return group → typed config.

    ``partial=True`` checks only the groups present (a standalone params file); otherwise
    a missing group is an error too.

    Raises
    ------
    ConfigError
        One line for the first problem: an unknown or missing group, or a key of a group with
        the wrong type, a value out of range, or an unknown key.
    """
    unknown = sorted(set(params) - set(GROUPS) - {CHECK_KEY})
    if unknown:
        raise ConfigError(
            f"params: unknown group(s) {unknown}; valid groups are {sorted(GROUPS)} "
            "(each a directory of conf/)."
        )
    missing = [g for g in GROUPS if g not in params]
    if missing and not partial:
        raise ConfigError(
            f"params: no {missing[0]!r} section; add it to the defaults of conf/config.yaml "
            "and run `make params`."
        )
    groups = [g for g in GROUPS if g in params or not partial]
    return {g: group_class(g).from_params(params) for g in groups}  # type: ignore[attr-defined]


def _resolve(*, _root_: Any) -> str:
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(_root_, resolve=False)
    assert isinstance(raw, dict)
    raw.pop(CHECK_KEY, None)  # this very interpolation: resolving it again would recurse
    resolved = OmegaConf.to_container(OmegaConf.create(raw), resolve=True)
    assert isinstance(resolved, dict)
    check_params(resolved)  # type: ignore[arg-type]
    return CHECKED


def register_resolver() -> None:
    """Register the ``${astropipe_schema:}`` resolver with OmegaConf (once per process)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, _resolve)
