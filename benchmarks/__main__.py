"""``python -m benchmarks [NAME ...] [--quick]``: run every ``bench_*.py`` (or the named ones)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    flags = [a for a in args if a.startswith("-")]
    names = [a for a in args if not a.startswith("-")]
    here = Path(__file__).parent
    available = sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))
    unknown = sorted(set(names) - set(available))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {available}", file=sys.stderr)
        return 2
    status = 0
    for name in names or available:
        print(f"\n== bench_{name} ==", flush=True)
        module = importlib.import_module(f"benchmarks.bench_{name}")
        status |= module.main(flags)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
