"""Configuration: params.yaml equals the composition of conf/; every key is typed, ranged and read.

The bad values are those of issue 7 (a new user's campaign): each must be one line naming the
key, the value and what is expected, from every entry point, with nothing written.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import shutil
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from astropipe.config import EXP_RUN_ENV, compose, compose_and_dump, from_mapping, load_params
from astropipe.configtypes import _unwrap, schema_dataclasses
from astropipe.errors import ConfigError
from astropipe.schema import CHECK_KEY, GROUPS, group_class
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
    from astropipe.schema import CHECK_KEY, GROUPS

    assert set(params) == set(GROUPS) | {CHECK_KEY}
    assert {d.name for d in (root / "conf").iterdir() if d.is_dir()} == set(GROUPS)
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


# --- typed schema: one line per bad value, through every entry point ----------------------

BAD_VALUES = [
    ("zarr.rebuild=no", "zarr.rebuild: 'no' is not valid; expected true or false"),
    ("zarr.rebuild='false'", "zarr.rebuild: 'false' is not valid; expected true or false"),
    ("zarr.rebuild=off", "zarr.rebuild: 'off' is not valid; expected true or false"),
    ("zarr.rebuild=yes", "zarr.rebuild: 'yes' is not valid; expected true or false"),
    ("features.min_points=abc", "features.min_points: 'abc' is not valid; expected an integer"),
    ("compute.workers=two", "compute.workers: 'two' is not valid; expected an integer"),
    ("compute.workers=0", "compute.workers: 0 is not valid; expected a number >= 1"),
    ("ztf.irsa.radius=abc", "ztf.irsa.radius: 'abc' is not valid; expected a number"),
    ("ztf.irsa.ra=abc", "ztf.irsa.ra: 'abc' is not valid; expected a number"),
    ("ztf.irsa.ra=360", "ztf.irsa.ra: 360 is not valid; expected a number < 360"),
    ("ztf.irsa.dec=-91", "ztf.irsa.dec: -91 is not valid; expected a number >= -90"),
    ("zarr.chunks.sky=big", "zarr.chunks.sky: 'big' is not valid; expected an integer"),
    ("ztf.irsa.timeout=[-1,-1]", "ztf.irsa.timeout[0]: -1 is not valid; expected a number > 0"),
    (
        "compute.memory_limit=-1GB",
        "compute.memory_limit: '-1GB' is not valid; expected a positive memory size",
    ),
    ("calibration.bias.clip.low=-3", "calibration.bias.clip.low: -3 is not valid; expected a"),
    ("calibration.cosmics.sigclip=-4.5", "calibration.cosmics.sigclip: -4.5 is not valid"),
    ("ztf.irsa.retries=-1", "ztf.irsa.retries: -1 is not valid; expected a number >= 0"),
    ("ztf.source=alerce", "ztf.source: 'alerce' is not a valid option; choose one of"),
    ("calibration.overscan.axis=2", "choose one of [0, 1, null]"),
    ("validation.ranges.ra=[1]", "validation.ranges.ra: [1] is not valid; expected a list"),
    ("calibration.memory_limit=8GB", "exceeds compute.memory_limit=4GB"),
]


@pytest.mark.parametrize(("override", "message"), BAD_VALUES)
def test_bad_value_is_one_config_error_line(root: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        compose([override], root=root)
    text = str(info.value)
    assert message in text and "\n" not in text


@pytest.mark.parametrize(
    ("override", "message"),
    [BAD_VALUES[0], BAD_VALUES[5], BAD_VALUES[12], ("ztf=nonexistent", "ztf/nonexistent")],
)
def test_cli_and_make_params_refuse_in_one_line(
    conf_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys, override: str, message: str
) -> None:
    from astropipe.cli import main as cli_main
    from astropipe.params import main as params_main

    monkeypatch.chdir(conf_copy)
    assert cli_main(["show-config", override]) == 1
    assert params_main([override]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(ln.startswith("error: ") and message in ln for ln in err), err
    assert not (conf_copy / "params.yaml").exists()  # nothing written
    assert params_main(["zarr.rebuild=true"]) == 0  # a real boolean is fine
    assert load_params(conf_copy / "params.yaml", check_conf=False)["zarr"]["rebuild"] is True


def test_stage_refuses_bad_value_before_touching_the_store(in_root: Path, capsys) -> None:
    from astropipe.cli import main as cli_main

    store = in_root / "data/processed/zarr/lwa.zarr"
    before = sorted(p.stat().st_mtime_ns for p in store.rglob("*")) if store.exists() else None
    assert cli_main(["fits-to-zarr", "--collection", "lwa", "zarr.rebuild=no"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: zarr.rebuild: 'no' is not valid")
    after = sorted(p.stat().st_mtime_ns for p in store.rglob("*")) if store.exists() else None
    assert after == before


def test_missing_group_file_is_one_line(conf_copy: Path) -> None:
    (conf_copy / "conf/ztf/default.yaml").unlink()
    with pytest.raises(ConfigError) as info:
        compose(root=conf_copy)
    text = str(info.value)
    assert "Could not find 'ztf/default'" in text and "\n" not in text


# --- params.yaml must be conf/'s composition -----------------------------------------------


@pytest.fixture()
def conf_copy(root: Path, tmp_path: Path) -> Path:
    """A directory holding a copy of conf/ (a repository root for composition)."""
    shutil.copytree(root / "conf", tmp_path / "conf")
    return tmp_path


def test_hand_edited_params_are_refused(conf_copy: Path, monkeypatch) -> None:
    monkeypatch.delenv(EXP_RUN_ENV, raising=False)
    out = compose_and_dump(conf_copy / "params.yaml", root=conf_copy)
    assert load_params(out)["zarr"]["rebuild"] is False
    out.write_text(out.read_text().replace("rebuild: false", "rebuild: true"))
    with pytest.raises(
        ConfigError,
        match=r"params.yaml differs from conf/ at key zarr.rebuild "
        r"\(true in params.yaml, false from conf/\); run `make params`",
    ):
        load_params(out)


def test_conf_changed_without_make_params_is_refused(conf_copy: Path, monkeypatch) -> None:
    monkeypatch.delenv(EXP_RUN_ENV, raising=False)
    out = compose_and_dump(conf_copy / "params.yaml", root=conf_copy)
    f = conf_copy / "conf/features/default.yaml"
    f.write_text(f.read_text().replace("min_points: 3 ", "min_points: 5 "))
    with pytest.raises(ConfigError, match=r"at key features.min_points \(3 in params.yaml, 5"):
        load_params(out)


def test_exp_run_accepts_overrides_but_not_new_keys_or_bad_values(
    conf_copy: Path, monkeypatch
) -> None:
    out = compose_and_dump(conf_copy / "params.yaml", ["features.min_points=7"], root=conf_copy)
    monkeypatch.delenv(EXP_RUN_ENV, raising=False)
    with pytest.raises(ConfigError, match="at key features.min_points"):
        load_params(out)
    monkeypatch.setenv(EXP_RUN_ENV, "exp-test")  # as DVC sets it for every stage of an exp run
    assert load_params(out)["features"]["min_points"] == 7
    data = yaml.safe_load(out.read_text())
    data["zarr"]["rebuild"] = "no"
    out.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="zarr.rebuild: 'no' is not valid"):
        load_params(out)
    data["zarr"]["rebuild"] = False
    data["zarr"]["rebuilt"] = True
    out.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"zarr: unknown key\(s\) \['rebuilt'\]"):
        load_params(out)


def test_dvc_exp_run_composition_is_checked(root: Path, tmp_path: Path) -> None:
    """DVC's own compose_and_dump, in a fresh process that never imported astropipe."""
    code = (
        "import sys\n"
        "from dvc.utils.hydra import compose_and_dump\n"
        "try:\n"
        f"    compose_and_dump({str(tmp_path / 'p.yaml')!r}, {str(root / 'conf')!r}, None,"
        f" 'config', {str(root)!r}, ['zarr.rebuild=no'])\n"
        "except Exception as exc:\n"
        "    print(exc); sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert "zarr.rebuild: 'no' is not valid; expected true or false" in proc.stdout
    assert not (tmp_path / "p.yaml").exists()


# --- one source of defaults, every key declared and read -----------------------------------


def _walk(cls: type, conf: Any, key: str) -> Iterator[tuple[str, Any, Any, bool]]:
    """(key, code default or MISSING, conf value, has default) for every schema leaf."""
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        k = f"{key}.{f.name}"
        assert f.name in conf, f"{k}: declared in {cls.__name__} but missing from conf/"
        value = conf[f.name]
        tp = _unwrap(hints[f.name])
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            yield from _walk(tp, value, k)
            continue
        if typing.get_origin(tp) is dict:
            inner = _unwrap(typing.get_args(tp)[1])
            if dataclasses.is_dataclass(inner):
                for name, entry in value.items():
                    yield from _walk(inner, entry, f"{k}.{name}")
                continue
        if f.default is not dataclasses.MISSING:
            yield k, f.default, value, True
        elif f.default_factory is not dataclasses.MISSING:
            yield k, f.default_factory(), value, True
        else:
            yield k, None, value, False


def test_code_defaults_equal_conf(root: Path) -> None:
    """Defaults live in conf/: a default in code (kept for direct construction in tests and
    scripts) must say the same, and every schema field must appear in conf/."""
    params = compose(root=root)
    diffs = []
    for group in GROUPS:
        for key, default, value, has_default in _walk(group_class(group), params[group], group):
            if has_default and default not in ({}, None) and default != value:
                diffs.append(f"{key}: code {default!r} != conf {value!r}")
    assert not diffs, diffs


def test_every_conf_group_has_a_schema(root: Path) -> None:
    groups = {p.name for p in (root / "conf").iterdir() if p.is_dir()}
    assert groups == set(GROUPS)
    assert set(compose(root=root)) == set(GROUPS) | {CHECK_KEY}


def test_every_schema_field_is_read(root: Path) -> None:
    """Every schema field (so every conf/ key) is read by code outside the schema classes.

    Name-level: an attribute access ``<anything>.<field>`` anywhere in src/astropipe that is
    not inside a schema class (their own checks do not count as use). It catches keys read
    only to be refused (features.use_upper_limits) or checked (clip.stdfunc); fields sharing
    a name (compute.memory_limit, calibration.memory_limit) are told apart by their own
    tests (test_compute_memory_limit_is_used).
    """
    classes = {dc for g in GROUPS for dc in schema_dataclasses(group_class(g))}
    names = {dc.__name__ for dc in classes}
    reads: set[str] = set()
    for path in (root / "src/astropipe").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        inside = {
            id(sub)
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef) and node.name in names
            for sub in ast.walk(node)
        }
        reads |= {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Load)
            and id(node) not in inside
        }
    unread = sorted(
        f"{dc.__name__}.{f.name}"
        for dc in classes
        for f in dataclasses.fields(dc)
        if f.name not in reads
    )
    assert not unread, f"config fields nothing reads: {unread}"


def test_compute_memory_limit_is_used() -> None:
    from astropipe.calibration.config import CalibrationConfig

    params = {"calibration": {"memory_limit": None}, "compute": {"memory_limit": "2GB"}}
    assert CalibrationConfig.from_params(params).memory_limit == "2GB"
    params["calibration"]["memory_limit"] = "3GB"
    with pytest.raises(ConfigError, match="exceeds compute.memory_limit=2GB"):
        CalibrationConfig.from_params(params)


def test_removed_keys_are_unknown(root: Path) -> None:
    for key in ("features.use_upper_limits=false", "calibration.bias.clip.stdfunc=std"):
        with pytest.raises(ConfigError, match="Could not override"):
            compose([key], root=root)


def test_stage_script_under_exp_run_refuses_a_string_boolean(root: Path, conf_copy: Path) -> None:
    """A stage script, as DVC runs it in an experiment: one line, exit 1, nothing created."""
    out = compose_and_dump(conf_copy / "params.yaml", root=conf_copy)
    out.write_text(out.read_text().replace("rebuild: false", "rebuild: 'no'"))
    env = {**os.environ, EXP_RUN_ENV: "exp-test"}
    proc = subprocess.run(
        [sys.executable, str(root / "stages/fits_to_zarr.py"), "lwa"],
        cwd=conf_copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: zarr.rebuild: 'no' is not valid; expected true or false")
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in conf_copy.iterdir()) == ["conf", "params.yaml"]
