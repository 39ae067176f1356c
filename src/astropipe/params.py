"""``python -m astropipe.params``: compose params.yaml from conf/ (what `make params` runs)."""

from __future__ import annotations

import sys

from astropipe.config import compose_and_dump


def main(argv: list[str] | None = None) -> int:
    """Compose ``params.yaml`` in the repository root; extra arguments are Hydra overrides."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = compose_and_dump("params.yaml", args)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
