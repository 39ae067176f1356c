"""``python -m astropipe.params``: compose params.yaml from conf/ (what `make params` runs)."""

from __future__ import annotations

import sys

from astropipe.config import compose_and_dump
from astropipe.errors import AstropipeError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Compose ``params.yaml`` in the repository root; extra arguments are Hydra overrides.

    A bad value, an unknown key or a missing conf/ file prints one line and returns 1;
    params.yaml is then left as it was.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        out = compose_and_dump("params.yaml", args)
    except AstropipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
