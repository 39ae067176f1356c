"""A stage script run with a python that lacks the project's packages says what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from astropipe.stage_main import MISSING_ENV_HINT, stage_main

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "stages").glob("*.py") if not p.name.startswith("_"))


def _run_bare(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -S stages/<script>``: this interpreter without its site-packages (so without
    astropipe, numpy, hydra ...), the way a system python3 outside .venv runs it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run(
        [sys.executable, "-S", f"stages/{script}"],
        cwd=ROOT,
        env={**clean, "PYTHONNOUSERSITE": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_stage_script_imports_the_guard_first() -> None:
    assert len(SCRIPTS) >= 8
    for name in SCRIPTS:
        lines = (ROOT / "stages" / name).read_text().splitlines()
        first = next(ln for ln in lines if ln.startswith(("import ", "from ")) and "sys" not in ln)
        assert first.startswith("import _env"), f"stages/{name}: import _env before astropipe"


@pytest.mark.parametrize("script", SCRIPTS)
def test_no_astropipe_is_one_line_hint(script: str) -> None:
    proc = _run_bare(script)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: No module named 'astropipe'")
    assert "activate .venv" in line and "`make repro`" in line


def test_astropipe_without_its_dependencies_names_the_missing_one() -> None:
    proc = _run_bare("ingest_ztf.py", PYTHONPATH=str(ROOT / "src"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: No module named ") and "'astropipe'" not in line
    assert "activate .venv" in line


def test_guard_and_stage_main_say_the_same() -> None:
    sys.path.insert(0, str(ROOT / "stages"))
    hook = sys.excepthook
    try:
        import _env

        assert _env.HINT == MISSING_ENV_HINT
    finally:
        sys.excepthook = hook
        sys.path.remove(str(ROOT / "stages"))


def test_stage_main_turns_a_lazy_missing_import_into_the_hint(capsys) -> None:
    def fn() -> None:
        raise ModuleNotFoundError("No module named 'fastavro'", name="fastavro")

    with pytest.raises(SystemExit) as info:
        stage_main(fn)
    assert info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: No module named 'fastavro'") and "make repro" in err
