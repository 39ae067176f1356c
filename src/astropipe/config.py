"""Configuration: conf/ (Hydra) is the source of truth, params.yaml is its composition.

DVC stages read their section of ``params.yaml`` with :func:`load_params`; the ``astropipe``
command composes ``conf/`` with Hydra-style overrides through :func:`compose` (the same
composition DVC's Hydra integration performs on ``dvc exp run``). Sections become typed
dataclasses through :func:`from_mapping`, which rejects unknown keys and lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from astropipe.errors import ConfigError, MissingInputError

__all__ = [
    "find_root",
    "conf_dir",
    "load_params",
    "compose",
    "compose_and_dump",
    "from_mapping",
]

T = TypeVar("T")


def find_root(start: str | os.PathLike[str] | None = None) -> Path:
    """Return the repository root: the nearest parent holding ``conf/config.yaml``.

    Raises
    ------
    MissingInputError
        When no parent of ``start`` (default: the working directory) holds ``conf/config.yaml``.
    """
    here = Path(start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "conf" / "config.yaml").is_file():
            return candidate
    raise MissingInputError(
        f"{here}: no conf/config.yaml in this directory or its parents; "
        "run astropipe from inside an astropipe repository clone."
    )


def conf_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Return the absolute path of ``conf/``."""
    return find_root(root) / "conf"


def load_params(path: str | os.PathLike[str] = "params.yaml") -> dict[str, Any]:
    """Load the composed ``params.yaml`` that DVC stages read.

    Raises
    ------
    MissingInputError
        When the file does not exist (run ``make params``).
    """
    p = Path(path)
    if not p.is_file():
        raise MissingInputError(f"{p}: params file not found; run `make params` to compose it.")
    with p.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at top level, found {type(data).__name__}.")
    return data


def compose(
    overrides: Sequence[str] = (), *, root: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Compose ``conf/config.yaml`` with Hydra ``overrides`` and return a plain dict.

    Parameters
    ----------
    overrides
        Hydra override strings, e.g. ``["ztf=irsa", "ztf.irsa.ra=210.8"]``.
    root
        Repository root; found from the working directory by default.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(str(conf_dir(root)), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"conf/: could not apply overrides {list(overrides)}: {first}; "
            "check the key names against conf/ (e.g. `astropipe show-config`)."
        ) from exc
    obj = OmegaConf.to_container(cfg)
    assert isinstance(obj, dict)
    return obj  # type: ignore[return-value]


def compose_and_dump(
    output: str | os.PathLike[str] = "params.yaml",
    overrides: Sequence[str] = (),
    *,
    root: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``params.yaml`` exactly as DVC's Hydra integration does on ``dvc exp run``.

    This calls DVC's own ``compose_and_dump`` so `make params` and `dvc exp run` cannot drift.
    """
    from dvc.utils.hydra import compose_and_dump as dvc_compose_and_dump

    out = Path(output)
    dvc_compose_and_dump(
        out, str(conf_dir(root)), None, "config", str(find_root(root)), list(overrides)
    )
    return out


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    if _is_dataclass_type(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, found {value!r}.")
        return from_mapping(tp, value, where=where)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if len(args) == 1:
            return _coerce(args[0], value, where)
        return value
    if origin in (tuple, list) and isinstance(value, Sequence) and not isinstance(value, str):
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        items = [_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def from_mapping(cls: type[T], data: Mapping[str, Any], *, where: str = "") -> T:
    """Build dataclass ``cls`` from a config mapping, recursing into nested dataclasses.

    Raises
    ------
    ConfigError
        On an unknown key (the message lists the valid keys) or a missing required key.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown key(s) {unknown}; valid keys are {sorted(fields)}."
        )
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        key = f"{where}.{name}" if where else name
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: required key missing; add it to conf/.")
    return cls(**kwargs)


def choice(value: str, valid: Sequence[str], *, where: str) -> str:
    """Return ``value`` if it is one of ``valid``, else raise a ConfigError listing them."""
    if value not in valid:
        raise ConfigError(f"{where}: {value!r} is not a valid option; choose one of {list(valid)}.")
    return value
