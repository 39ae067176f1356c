"""The ``astropipe`` command: run any stage's library code outside DVC.

Examples
--------
Plan a live IRSA query without touching the network or the disk::

    astropipe ingest-ztf ztf.source=irsa ztf.irsa.ra=210.8023 ztf.irsa.dec=54.3489 \\
        ztf.irsa.radius=0.05 ztf.irsa.filters=[zg,zr] ztf.irsa.mjd_range=[59800,59820] \\
        --limit 20 --dry-run

Positional ``key=value`` arguments are Hydra overrides applied to ``conf/`` (the same grammar
as ``dvc exp run -S``); they never modify params.yaml.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from astropipe import __version__
from astropipe.config import compose
from astropipe.errors import AstropipeError
from astropipe.ingest import CHOICES, check_overrides, ingest, selected
from astropipe.io.tables import dumps_json
from astropipe.stage_main import setup_logging

__all__ = ["main", "STAGES"]

#: command name → (module with ``run``, DVC stage name, one-line help)
STAGES: dict[str, tuple[str, str, str]] = {
    "ingest-ztf": ("astropipe.ztf.stage", "ingest_ztf", "ZTF alert packets + DR light curves"),
    "ingest-tess": (
        "astropipe.tess.stage",
        "ingest_tess",
        "TESS/Kepler/K2 light-curve FITS -> the TESS light-curve table",
    ),
    "ingest-catalogs": (
        "astropipe.catalogs.stage",
        "ingest_catalogs",
        "NASA Exoplanet Archive KOI/TOI/K2 catalogs + objects link",
    ),
    "build-features": (
        "astropipe.features.stage",
        "build_lightcurve_features",
        "light-curve features per object and band",
    ),
    "calibrate-images": (
        "astropipe.calibration.stage",
        "calibrate_images",
        "master bias/dark/flat and calibrated science frames",
    ),
    "fits-to-zarr": ("astropipe.zarrcube.stage", "fits_to_zarr", "FITS image series -> Zarr cube"),
    "validate": ("astropipe.validation.stage", "validate", "data contracts on every artifact"),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="astropipe",
        description="Run astropipe stages outside DVC, with Hydra-style overrides of conf/.",
    )
    p.add_argument("--version", action="version", version=f"astropipe {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, _, help_text) in STAGES.items():
        s = sub.add_parser(name, help=help_text)
        s.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. ztf.on_error=fail")
        s.add_argument("--dry-run", action="store_true", help="print a JSON summary, write nothing")
        s.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default INFO)")
        if name == "ingest-ztf":
            s.add_argument("--limit", type=int, default=None, help="read at most N packets/rows")
        if name == "ingest-tess":
            s.add_argument("--limit", type=int, default=None, help="read at most N files")
        if name == "ingest-catalogs":
            s.add_argument("--limit", type=int, default=None, help="keep N rows per catalog")
        if name == "fits-to-zarr":
            s.add_argument(
                "--collection", required=True, help="collection name under zarr.collections"
            )
    ing = sub.add_parser("ingest", help="run one or every ingest source; one JSON summary")
    ing.add_argument("--source", required=True, choices=CHOICES, help="which source (all: each)")
    ing.add_argument("overrides", nargs="*", help="Hydra overrides, each for its own source")
    ing.add_argument("--dry-run", action="store_true", help="plan and summarise, write nothing")
    ing.add_argument("--limit", type=int, default=None, help="passed to every source run")
    ing.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default INFO)")
    show = sub.add_parser("show-config", help="print the composed configuration as JSON")
    show.add_argument("overrides", nargs="*", help="Hydra overrides")
    return p


def _runner(command: str) -> Callable[..., dict[str, Any]]:
    module = importlib.import_module(STAGES[command][0])
    return module.run


def _ingest(args: argparse.Namespace, params: dict[str, Any]) -> int:
    """``astropipe ingest``: every selected source, one consolidated JSON summary."""
    summary, ok = ingest(
        params,
        selected(args.source),
        dry_run=args.dry_run,
        limit=args.limit,
        progress=sys.stderr.isatty(),
    )
    sys.stdout.write(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``astropipe`` console script."""
    args = _parser().parse_args(argv)
    setup_logging(getattr(args, "log_level", None))
    try:
        if args.command == "ingest":  # before composing, which would check the unused section
            check_overrides(args.overrides, selected(args.source))
        params = compose(args.overrides)
        if args.command == "show-config":
            sys.stdout.write(dumps_json(params))
            return 0
        if args.command == "ingest":
            return _ingest(args, params)
        kwargs: dict[str, Any] = {"dry_run": args.dry_run}
        if args.command in ("ingest-ztf", "ingest-tess", "ingest-catalogs"):
            kwargs["limit"] = args.limit
            kwargs["progress"] = sys.stderr.isatty()
        if args.command == "fits-to-zarr":
            kwargs["collection"] = args.collection
            kwargs["progress"] = sys.stderr.isatty()
        summary = _runner(args.command)(params, **kwargs)
    except AstropipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
