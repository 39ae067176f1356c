"""What a new user meets first: each command's --help, show-config of one section, list hints."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from astropipe.cli import EXAMPLES, STAGES, check_bare_lists, main
from astropipe.errors import ConfigError
from astropipe.ingest import CHOICES

COMMANDS = [*STAGES, "ingest", "show-config"]


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_help_has_its_own_example(capsys, command: str) -> None:
    out = _help(capsys, command)
    examples = out.split("examples:\n", 1)[1]
    assert f"astropipe {command} " in examples or examples.strip() == f"astropipe {command}"
    for line in EXAMPLES.get(command, ()):
        assert line in out  # not re-wrapped: copy-pasteable


def test_help_lists_the_choices(capsys, in_root: Path) -> None:
    assert "a key of zarr.collections: ccd, lwa" in _help(capsys, "fits-to-zarr")
    out = _help(capsys, "ingest")
    assert f"one of {', '.join(CHOICES)}" in " ".join(out.split())


def test_show_config_one_section(capsys, in_root: Path) -> None:
    assert main(["show-config", "ztf"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert list(shown) == ["ztf"] and shown["ztf"]["source"] == "sample"
    assert main(["show-config", "ztf.irsa", "compute", "ztf.irsa.filters=[zg,zr]"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert sorted(shown) == ["compute", "ztf.irsa"]
    assert shown["ztf.irsa"]["filters"] == ["zg", "zr"]


def test_show_config_unknown_section_lists_the_sections(capsys, in_root: Path) -> None:
    assert main(["show-config", "ztff"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: show-config ztff: no section 'ztff'") and "'ztf'" in err
    assert "\n" not in err


def test_list_without_brackets_gets_the_bracket_hint(capsys, in_root: Path) -> None:
    assert main(["show-config", "ztf.irsa.filters=zg,zr"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "a list needs brackets: ztf.irsa.filters=[zg,zr]" in line
    assert "valid keys" not in line  # not a key-name complaint
    assert main(["ingest-ztf", "ztf.irsa.mjd_range=59800,59820", "--dry-run"]) == 1
    assert "ztf.irsa.mjd_range=[59800,59820]" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override", ["a.b=[x,y]", "a.b='x,y'", 'a.b="x,y"', "a.b={k: 1, j: 2}", "a.b=x", "+a.b=[1,2]"]
)
def test_bracketed_or_quoted_commas_pass(override: str) -> None:
    check_bare_lists([override])


@pytest.mark.parametrize("override", ["a.b=x,y", "a.b=[1],2", "a.b=1,2,3"])
def test_bare_commas_refused(override: str) -> None:
    with pytest.raises(ConfigError, match="a list needs brackets"):
        check_bare_lists([override])


@pytest.mark.parametrize(
    "example",
    [
        EXAMPLES["fits-to-zarr"][0],
        EXAMPLES["ingest"][1],
        *EXAMPLES["show-config"],
    ],
)
def test_examples_run(capsys, in_root: Path, example: str) -> None:
    argv = shlex.split(example, comments=True)
    assert argv[0] == "astropipe"
    assert main(argv[1:]) == 0, capsys.readouterr().err
    json.loads(capsys.readouterr().out)
