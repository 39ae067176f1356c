"""Configuration: conf/ (Hydra) is the source of truth, params.yaml is its composition.

DVC stages read ``params.yaml`` with :func:`load_params`, which refuses a file that no longer
matches ``conf/`` and checks every key against the typed schema (:mod:`astropipe.schema`); the
``astropipe`` command composes ``conf/`` with Hydra-style overrides through :func:`compose`
(the same composition DVC's Hydra integration performs on ``dvc exp run``). Every composition
runs the schema check (see :mod:`astropipe.schema`), so a bad value is one
:class:`~astropipe.errors.ConfigError` line, never a traceback. Sections become typed
dataclasses through :func:`from_mapping` (:mod:`astropipe.configtypes`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from astropipe.configtypes import from_mapping
from astropipe.errors import ConfigError, MissingInputError

__all__ = [
    "find_root",
    "conf_dir",
    "load_params",
    "compose",
    "compose_and_dump",
    "from_mapping",
    "first_difference",
    "EXP_RUN_ENV",
]

log = logging.getLogger(__name__)

#: Set by DVC in the environment of every stage it runs for ``dvc exp run`` (the experiment's
#: name; see dvc/repo/experiments/queue/base.py, ``run_env``).
EXP_RUN_ENV = "DVC_EXP_NAME"


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


def _flatten(data: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(data, Mapping) and data:
        for k, v in data.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, data


def first_difference(
    ours: Mapping[str, Any], theirs: Mapping[str, Any]
) -> tuple[str, Any, Any] | None:
    """The first leaf key (in ``theirs``' order) whose value differs, with both values.

    A key missing on one side is reported with the value ``<missing>``.
    """
    a, b = dict(_flatten(ours)), dict(_flatten(theirs))
    for key in [*b, *(k for k in a if k not in b)]:
        va, vb = a.get(key, "<missing>"), b.get(key, "<missing>")
        if va != vb or type(va) is not type(vb):
            return key, va, vb
    return None


def _show(value: Any) -> str:
    """A value as YAML/JSON spells it (true, null, "text"), for messages."""
    return json.dumps(value, default=str)


def _check_against_conf(params: Mapping[str, Any], path: Path, root: Path) -> None:
    """Refuse a params.yaml that is not the composition of conf/ (see :func:`load_params`)."""
    conf = compose(root=root)
    if os.environ.get(EXP_RUN_ENV):
        # `dvc exp run -S key=value` composes params.yaml from conf/ plus the overrides, and
        # DVC does not tell the stage which keys it overrode: differing values are taken as
        # those overrides. The keys themselves must still be conf/'s.
        a, b = dict(_flatten(params)), dict(_flatten(conf))
        extra = [k for k in a if k not in b] + [k for k in b if k not in a]
        if extra:
            raise ConfigError(
                f"{path}: key {extra[0]} is not in conf/ (or conf/ has it and params.yaml "
                "does not); run `make params`, or give overrides of existing keys only."
            )
        changed = [k for k in b if a[k] != b[k]]
        if changed:
            log.info("dvc exp run (%s): overrides of conf/: %s", os.environ[EXP_RUN_ENV], changed)
        return
    diff = first_difference(params, conf)
    if diff is not None:
        key, found, expected = diff
        raise ConfigError(
            f"{path} differs from conf/ at key {key} ({_show(found)} in params.yaml, "
            f"{_show(expected)} "
            "from conf/); run `make params`, or first put the value you want in conf/."
        )


def load_params(
    path: str | os.PathLike[str] = "params.yaml", *, check_conf: bool = True
) -> dict[str, Any]:
    """Load the composed ``params.yaml`` that DVC stages read, and check it.

    Parameters
    ----------
    path
        The params file.
    check_conf
        Compare it with a fresh composition of the ``conf/`` of its repository and refuse a
        difference (a hand edit, or conf/ changed without ``make params``). Under ``dvc exp
        run`` (``DVC_EXP_NAME`` set) only the key set is compared: DVC composed the file from
        conf/ plus the ``-S`` overrides, whose values legitimately differ. A params file with
        no ``conf/`` in its directory or above (a standalone file, e.g. in tests) has nothing
        to differ from: only the groups it holds are checked against the schema.

    Raises
    ------
    MissingInputError
        When the file does not exist (run ``make params``).
    ConfigError
        When it differs from conf/, or a key has the wrong type or range (one line).
    """
    from astropipe.schema import check_params

    p = Path(path)
    if not p.is_file():
        raise MissingInputError(f"{p}: params file not found; run `make params` to compose it.")
    try:
        with p.open(encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{p}: not valid YAML ({str(exc).splitlines()[0]}); run `make params`."
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at top level, found {type(data).__name__}.")
    try:
        root: Path | None = find_root(p.resolve().parent)
    except MissingInputError:
        root = None
    # The schema first: a bad value is reported as such, before any comparison or log line.
    check_params(data, partial=root is None)
    if check_conf and root is not None:
        _check_against_conf(data, p, root)
    return data


def _config_error(exc: BaseException, what: str) -> ConfigError:
    """One line for a failed composition: the schema's own message, or Hydra's first line."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConfigError):
            return ConfigError(str(seen))
        seen = seen.__cause__ or seen.__context__
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    first = lines[0] if lines else type(exc).__name__
    if exc.__cause__ is not None and str(exc.__cause__).startswith("Key '"):
        first = f"{first.rstrip('.')} ({str(exc.__cause__).splitlines()[0]})"
    options = [ln for ln in lines[1:] if ln.startswith("Available options")]
    if options:
        i = lines.index(options[0])
        avail = [
            ln for ln in lines[i + 1 :] if not ln.startswith(("Config search path", "provider"))
        ]
        avail = avail[: next((j for j, ln in enumerate(avail) if ":" in ln), len(avail))]
        first += f"; {options[0].rstrip(':').lower()}: {', '.join(avail) or 'none'}"
    return ConfigError(
        f"conf/: {what}: {first}; check the names against conf/ (e.g. `astropipe show-config`)."
    )


def compose(
    overrides: Sequence[str] = (), *, root: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Compose ``conf/config.yaml`` with Hydra ``overrides``, check it, return a plain dict.

    Parameters
    ----------
    overrides
        Hydra override strings, e.g. ``["ztf=irsa", "ztf.irsa.ra=210.8"]``.
    root
        Repository root; found from the working directory by default.

    Raises
    ------
    ConfigError
        One line: an unknown key or group option, a missing conf/ file, or a value the
        schema refuses.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from astropipe.schema import register_resolver

    register_resolver()
    try:
        with initialize_config_dir(str(conf_dir(root)), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
        OmegaConf.resolve(cfg)  # runs the schema check (conf/config.yaml: checked_by)
    except (HydraException, OmegaConfBaseException, ConfigError) as exc:
        raise _config_error(exc, f"could not compose with overrides {list(overrides)}") from None
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

    This calls DVC's own ``compose_and_dump`` so `make params` and `dvc exp run` cannot drift;
    the schema check runs inside it, and the file is written atomically.

    Raises
    ------
    ConfigError
        As :func:`compose`; ``output`` is left untouched.
    """
    from dvc.utils.hydra import compose_and_dump as dvc_compose_and_dump
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from astropipe.io.atomic import atomic_path
    from astropipe.schema import register_resolver

    register_resolver()
    out = Path(output)
    with atomic_path(out) as tmp:
        # DVC picks the dumper from the suffix: compose into a .yaml sibling, then move it.
        inner = tmp.with_name(tmp.name + ".yaml")
        try:
            dvc_compose_and_dump(
                inner, str(conf_dir(root)), None, "config", str(find_root(root)), list(overrides)
            )
            os.replace(inner, tmp)
        except (HydraException, OmegaConfBaseException, ConfigError) as exc:
            raise _config_error(
                exc, f"could not compose with overrides {list(overrides)}"
            ) from None
        finally:
            inner.unlink(missing_ok=True)
    return out
