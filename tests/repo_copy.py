"""Run the pipeline in a throw-away copy of the repository, as a fresh clone would.

Shared by the integration test and the SIMD-level test: copy the tracked (and untracked, not
ignored) files, ``git init``, run ``dvc`` with the project's environment on ``PATH``, and read
the output hashes DVC recorded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

__all__ = [
    "ROOT",
    "BIN",
    "GIT_ID",
    "copy_repo",
    "copy_run",
    "git",
    "module_log_env",
    "MODULE_LOG",
    "run_dvc",
    "out_hashes",
    "committed_lock",
    "dirty_inputs",
    "lock_differences",
    "input_differences",
]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def copy_repo(dest: Path) -> Path:
    """Copy the working tree's git-visible files into ``dest`` and make it a git repository."""
    files = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, files):
        src = ROOT / rel
        if not src.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


#: A committer identity for the copies' own commits (CI machines may have none).
GIT_ID = {
    "GIT_AUTHOR_NAME": "astropipe tests",
    "GIT_AUTHOR_EMAIL": "tests@example.org",
    "GIT_COMMITTER_NAME": "astropipe tests",
    "GIT_COMMITTER_EMAIL": "tests@example.org",
}


def copy_run(run: Path, dest: Path) -> Path:
    """Copy a repository that already ran the pipeline (outputs, ``.dvc/cache``, ``.git``)."""
    shutil.copytree(run, dest, symlinks=True)
    return dest


def git(repo: Path, *args: str) -> str:
    """Run ``git *args`` in ``repo`` with :data:`GIT_ID`; fail the test with git's output."""
    proc = subprocess.run(
        ["git", *args], cwd=repo, env={**os.environ, **GIT_ID}, capture_output=True, text=True
    )
    assert proc.returncode == 0, f"git {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


#: Where :func:`module_log_env` makes each stage process write its module list, as a
#: ``<log dir>/<stage script>[-<args>].json`` file, under the reference run's directory.
MODULE_LOG = "ASTROPIPE_TEST_MODULE_LOG"

_SITECUSTOMIZE = """
import atexit, json, os, sys
_LOG = os.environ.get("ASTROPIPE_TEST_MODULE_LOG")
if _LOG and sys.argv and sys.argv[0].replace(os.sep, "/").startswith("stages/"):
    def _dump():
        files = {getattr(m, "__file__", None) or "" for m in list(sys.modules.values())}
        name = "-".join([os.path.basename(sys.argv[0])[:-3], *sys.argv[1:]])
        with open(os.path.join(_LOG, name + ".json"), "w") as f:
            json.dump(sorted(p for p in files if "/astropipe/" in p), f)
    atexit.register(_dump)
"""


def module_log_env(repo: Path, log_dir: Path) -> dict[str, str]:
    """Environment for :func:`run_dvc` in which every stage script (``python stages/x.py``)
    writes the files of the ``astropipe`` modules it loaded to ``log_dir`` when it exits.

    A ``sitecustomize`` module on ``PYTHONPATH`` does it: no project code is involved, and the
    stages' outputs are unaffected (the lists go outside the repository).
    """
    hook = log_dir / "hook"
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    return {"PYTHONPATH": f"{repo / 'src'}{os.pathsep}{hook}", MODULE_LOG: str(log_dir)}


def run_dvc(
    repo: Path, *args: str, env: Mapping[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``dvc *args`` in ``repo``; with ``check``, fail the test with dvc's output."""
    full_env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "GX_ANALYTICS_ENABLED": "false",
        "DVC_NO_ANALYTICS": "1",
        # The copy's own package, not the editable install that points at the original tree.
        "PYTHONPATH": str(repo / "src"),
        **(env or {}),
    }
    proc = subprocess.run(
        [str(BIN / "dvc"), *args],
        cwd=repo,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if check:
        assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def out_hashes(lock: Mapping) -> dict[str, str]:
    """``{"stage:path": md5}`` for every output recorded in a parsed ``dvc.lock``."""
    hashes = {}
    for name, stage in lock["stages"].items():
        for out in stage.get("outs", []):
            hashes[f"{name}:{out['path']}"] = out["md5"]
    return hashes


def committed_lock() -> dict:
    """``dvc.lock`` as committed at ``HEAD`` (never the working tree, which a run rewrites)."""
    proc = subprocess.run(
        ["git", "show", "HEAD:dvc.lock"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git show HEAD:dvc.lock failed in {ROOT}: {proc.stderr.strip()}")
    return yaml.safe_load(proc.stdout)


def dirty_inputs() -> list[str]:
    """Tracked files that differ from ``HEAD`` (code, conf, params, data), dvc.lock excluded."""
    proc = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    paths = [line[3:] for line in proc.stdout.splitlines()]
    return [p for p in paths if p != "dvc.lock"]


def lock_differences(expected: Mapping, found: Mapping) -> list[str]:
    """Human-readable list of what differs between two parsed ``dvc.lock`` files."""
    diffs: list[str] = []
    a, b = expected.get("stages", {}), found.get("stages", {})
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            diffs.append(f"{name}: only in {'the fresh run' if name in b else 'the expected lock'}")
            continue
        for kind in ("cmd", "params"):
            if a[name].get(kind) != b[name].get(kind):
                diffs.append(f"{name}: {kind} differ")
        for kind in ("deps", "outs"):
            ea = {e["path"]: e.get("md5") for e in a[name].get(kind, [])}
            eb = {e["path"]: e.get("md5") for e in b[name].get(kind, [])}
            for path in sorted(set(ea) | set(eb)):
                if ea.get(path) != eb.get(path):
                    diffs.append(f"{name} {kind[:-1]} {path}: {ea.get(path)} -> {eb.get(path)}")
    return diffs


def input_differences(expected: Mapping, found: Mapping) -> list[str]:
    """What differs in the *inputs* two locks record: stages, commands, params, and deps that
    no stage produces (source code, sample data).

    Deps produced by another stage are left out: they follow that stage's outputs, which differ
    between platforms when a computation is not bit-reproducible. Input differences mean the
    lock was not re-made after a change; output-only differences mean a platform difference.
    """
    a, b = expected.get("stages", {}), found.get("stages", {})
    produced = {o["path"] for st in (*a.values(), *b.values()) for o in st.get("outs", [])}
    diffs = [f"stage {n}: in one lock only" for n in sorted(set(a) ^ set(b))]
    for name in sorted(set(a) & set(b)):
        for kind in ("cmd", "params"):
            if a[name].get(kind) != b[name].get(kind):
                diffs.append(f"{name}: {kind} differ")
        da = {e["path"]: e.get("md5") for e in a[name].get("deps", []) if e["path"] not in produced}
        db = {e["path"]: e.get("md5") for e in b[name].get("deps", []) if e["path"] not in produced}
        diffs += [f"{name} dep {p}" for p in sorted(set(da) | set(db)) if da.get(p) != db.get(p)]
    return diffs
