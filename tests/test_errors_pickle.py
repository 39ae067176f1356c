"""Every AstropipeError subclass survives pickling (review 1.4).

An error raised in a compute task (another process, a cluster worker) or in the cosmic-ray
child (``python -m astropipe.calibration.crchild``) crosses a process boundary pickled.
``HeaderValueError(message, *, path, kind)`` did not: pickle rebuilt it as ``cls(message)``
and loading raised a TypeError. dask and distributed bring tblib, which can hide such a
failure, and the cosmic-ray child imports neither, so the round trip runs in a fresh
interpreter in which neither dask nor tblib is imported.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import astropipe
from astropipe.errors import AstropipeError

ROOT = Path(__file__).resolve().parents[1]

#: A representative value for each constructor argument an error class takes besides the
#: message (a new keyword needs an entry here; the test says which).
ARGS = {"path": "/data/raw/frames/sci_001.fits", "kind": "science", "status": 503}

_CHILD = r"""
import importlib, inspect, json, pickle, sys
from pathlib import Path

classes, args = json.loads(sys.argv[1])
out = []
for module, name in classes:
    cls = getattr(importlib.import_module(module), name)
    kw = {}
    for p in list(inspect.signature(cls.__init__).parameters.values())[2:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        value = args[p.name]
        kw[p.name] = Path(value) if p.name == "path" else value
    exc = cls(f"{name}: what was expected, what was found, what to do", **kw)
    exc.add_note("a note")
    try:
        back = pickle.loads(pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception as e:
        out.append([module, name, f"{type(e).__name__}: {e}"])
        continue
    same = (
        type(back) is cls
        and back.args == exc.args
        and str(back) == str(exc)
        and vars(back) == vars(exc)
    )
    out.append([module, name, None if same else f"came back as {back!r} {vars(back)}"])
out.append(["imported", "dask/tblib", sorted(m for m in ("dask", "distributed", "tblib")
                                             if m in sys.modules)])
print(json.dumps(out))
"""


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def _all_error_classes() -> list[tuple[str, str]]:
    """Every AstropipeError subclass defined in the package (each module imported once)."""
    for m in pkgutil.walk_packages(astropipe.__path__, "astropipe."):
        importlib.import_module(m.name)
    classes = {
        (c.__module__, c.__qualname__)
        for c in [AstropipeError, *_subclasses(AstropipeError)]
        if c.__module__.startswith("astropipe.")
    }
    return sorted(classes)


def test_every_error_class_round_trips_through_pickle_without_dask() -> None:
    classes = _all_error_classes()
    assert ("astropipe.calibration.frames", "HeaderValueError") in classes
    for module, name in classes:
        cls = getattr(importlib.import_module(module), name)
        extra = list(inspect.signature(cls.__init__).parameters)[2:]
        unknown = [p for p in extra if p not in ARGS and p not in ("args", "kwargs")]
        assert not unknown, f"{module}.{name}: add representative values for {unknown} to ARGS"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps([classes, ARGS])],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    *results, (_, _, imported) = json.loads(proc.stdout)
    assert imported == [], f"the round trip must run without {imported} imported"
    failures = {f"{m}.{n}": why for m, n, why in results if why is not None}
    assert failures == {}
    assert len(results) == len(classes)
