"""Every module a stage runs is one of its DVC dependencies.

DVC re-runs a stage only when a listed dependency changes; a module the stage imports but
``dvc.yaml`` does not list would let its outputs go stale after a code change (and a teammate's
``dvc pull`` would fetch outputs the code no longer makes). During the session's reference run
each stage process recorded every ``astropipe`` module it had loaded when it exited, lazy
imports included (:func:`repo_copy.module_log_env`), so nothing runs again here.

Modules every stage loads to read its configuration (``astropipe.config``, the schema of every
conf/ group and the packages those live in) are left out: they are loaded by all stages alike,
and listing them would make every code change re-run the whole pipeline. What is checked is
the code a stage loads beyond that.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: Modules that cannot change an output, with the reason; left out of the check.
NO_OUTPUT_EFFECT = {
    "src/astropipe/progress.py": "draws progress bars on stderr only, never into outputs",
}

_BASELINE = """
import json, sys
import astropipe.stage_main
from astropipe.config import load_params
load_params()  # params.yaml checked against every conf/ group's schema, as each stage does
files = {getattr(m, "__file__", None) or "" for m in list(sys.modules.values())}
json.dump(sorted(p for p in files if "/astropipe/" in p), sys.stdout)
"""


def _relative(repo: Path, files: list[str]) -> set[str]:
    return {str(Path(p).resolve().relative_to(repo.resolve())) for p in files}


def _stages(repo: Path) -> list[tuple[str, list[str], list[str]]]:
    """``(name, command words, deps)`` for every stage, ``foreach`` expanded (dvc.yaml's own
    interpolation is only needed for deps that name data, which are not modules)."""
    spec = yaml.safe_load((repo / "dvc.yaml").read_text())
    params = yaml.safe_load((repo / "params.yaml").read_text())
    found = []
    for name, stage in spec["stages"].items():
        if "foreach" in stage:
            section, key = stage["foreach"].strip("${}").split(".")
            for item in params[section][key]:
                cmd = stage["do"]["cmd"].replace("${key}", str(item))
                found.append((f"{name}@{item}", shlex.split(cmd), stage["do"]["deps"]))
        else:
            found.append((name, shlex.split(stage["cmd"]), stage["deps"]))
    return found


def test_every_imported_module_is_a_dependency(
    reference_run: Path, reference_module_log: Path
) -> None:
    repo, logs = reference_run, reference_module_log
    proc = subprocess.run(
        [sys.executable, "-c", _BASELINE],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo / "src"), "GX_ANALYTICS_ENABLED": "false"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    baseline = _relative(repo, json.loads(proc.stdout))
    assert "src/astropipe/config.py" in baseline
    missing: list[str] = []
    for name, words, deps in _stages(repo):
        assert words[0] == "python" and words[1].startswith("stages/"), words
        record = logs / ("-".join([Path(words[1]).stem, *words[2:]]) + ".json")
        assert record.is_file(), f"{name}: the reference run left no module list {record}"
        loaded = _relative(repo, json.loads(record.read_text()))
        assert baseline <= loaded, f"{name}: did not read its configuration"
        covered = [d.rstrip("/") for d in deps if "${" not in d]
        for module in sorted(loaded - baseline - set(NO_OUTPUT_EFFECT)):
            if not any(module == d or module.startswith(d + "/") for d in covered):
                missing.append(f"{name}: {module}")
    assert not missing, (
        "modules run by a stage but not in its dvc.yaml deps (add them, or the stage's outputs "
        f"go stale when they change): {missing}"
    )


#: Keys that change only speed and memory, never an output byte (each stage's tests run
#: several values and compare bytes); no stage lists them, so tuning them re-runs nothing.
SPEED_ONLY = {
    "ztf.alerts.batch_size",
    "features.batch_points",
    "zarr.read_workers",
    "calibration.memory_limit",  # tests/test_calibration_memory.py: same bytes at 24MB
    "calibration.tile_rows",
}


def _leaves(tree: object, prefix: str) -> list[str]:
    if isinstance(tree, dict) and tree:
        return [leaf for k, v in tree.items() for leaf in _leaves(v, f"{prefix}.{k}")]
    return [prefix]


def _stage_params(repo: Path) -> list[tuple[str, list[str]]]:
    spec = yaml.safe_load((repo / "dvc.yaml").read_text())
    found = []
    for name, stage in spec["stages"].items():
        body = stage.get("do", stage)
        keys = [k if isinstance(k, str) else next(iter(k)) for k in body.get("params", [])]
        # a foreach stage's `zarr.collections.${key}`: every collection, one instance each
        found.append((name, [k.removesuffix(".${key}") for k in keys]))
    return found


def test_every_parameter_of_a_section_is_tracked_but_the_speed_only_ones(root: Path) -> None:
    """A stage listing keys one by one to leave SPEED_ONLY out must list every other key of
    that section: a key added to the section later is then never left untracked."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    untracked = []
    for name, keys in _stage_params(root):
        for section in sorted({k.split(".")[0] for k in keys}):
            if section in keys or not any(s.startswith(section + ".") for s in SPEED_ONLY):
                continue  # the whole section, or a section read in part on purpose
            for leaf in _leaves(params[section], section):
                if leaf in SPEED_ONLY:
                    continue
                if not any(leaf == k or leaf.startswith(k + ".") for k in keys):
                    untracked.append(f"{name}: {leaf}")
    assert not untracked, f"parameters no stage tracks (list them in dvc.yaml): {untracked}"
    listed = {k for _, keys in _stage_params(root) for k in keys}
    assert not SPEED_ONLY & listed
