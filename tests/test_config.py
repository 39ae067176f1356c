"""Configuration: params.yaml equals the composition of conf/, typed sections reject typos."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from astropipe.config import compose, compose_and_dump, from_mapping, load_params
from astropipe.errors import ConfigError
from astropipe.ztf.config import ZtfConfig


def test_params_yaml_matches_conf(root: Path, tmp_path: Path) -> None:
    out = compose_and_dump(tmp_path / "params.yaml", root=root)
    assert out.read_text() == (root / "params.yaml").read_text(), (
        "params.yaml differs from conf/: run `make params` and commit params.yaml"
    )


def test_compose_applies_overrides(root: Path) -> None:
    params = compose(["ztf.irsa.radius=0.05", "ztf.irsa.filters=[zg,zr]"], root=root)
    assert params["ztf"]["irsa"]["radius"] == 0.05
    assert params["ztf"]["irsa"]["filters"] == ["zg", "zr"]


def test_unknown_override_is_a_config_error(root: Path) -> None:
    with pytest.raises(ConfigError, match="ztf.sourc"):
        compose(["ztf.sourc=irsa"], root=root)


def test_every_group_composes_into_its_typed_schema(root: Path) -> None:
    params = load_params(root / "params.yaml")
    assert set(params) >= {"ztf", "features", "calibration", "zarr", "validation", "compute"}
    ZtfConfig.from_params(params)


def test_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['sorce'\]; valid keys are"):
        ZtfConfig.from_params({"ztf": {"sorce": "irsa"}})


def test_bad_choice_lists_options() -> None:
    with pytest.raises(ConfigError, match=r"choose one of \['sample', 'irsa'\]"):
        ZtfConfig.from_params({"ztf": {"source": "alerce"}})


def test_secrets_never_in_conf_or_params(root: Path) -> None:
    text = (root / "params.yaml").read_text() + "".join(
        p.read_text() for p in (root / "conf").rglob("*.yaml")
    )
    data = yaml.safe_load((root / "params.yaml").read_text())
    assert "token_env" in text  # only the *name* of the variable
    flat = str(data).lower()
    for word in ("password", "secret_key", "aws_secret"):
        assert word not in flat


def test_from_mapping_requires_dataclass() -> None:
    with pytest.raises(TypeError):
        from_mapping(dict, {})  # type: ignore[arg-type]
