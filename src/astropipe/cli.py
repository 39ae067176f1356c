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
import inspect
import json
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from astropipe import __version__
from astropipe.config import compose
from astropipe.errors import AstropipeError, ConfigError
from astropipe.ingest import CHOICES, check_overrides, ingest, selected
from astropipe.io.tables import dumps_json
from astropipe.progress import wanted as progress_wanted
from astropipe.stage_main import setup_logging

__all__ = ["main", "STAGES", "EXAMPLES", "check_bare_lists"]

_RAW = argparse.RawDescriptionHelpFormatter

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

#: command -> the examples its ``--help`` ends with (each runs as written, from the repo root)
EXAMPLES: dict[str, tuple[str, ...]] = {
    "ingest-ztf": (
        "astropipe ingest-ztf --limit 20 --dry-run          # decode 20 packets, write nothing",
        "astropipe ingest-ztf ztf.source=irsa ztf.irsa.ids=[633211400021156] --dry-run",
    ),
    "ingest-tess": (
        "astropipe ingest-tess --limit 3 --dry-run          # read 3 sample files",
        "astropipe ingest-tess tess.source=live tess.live.limit=1 --dry-run   # plan a MAST query",
    ),
    "ingest-catalogs": ("astropipe ingest-catalogs --limit 10 --dry-run",),
    "build-features": (
        "astropipe build-features features.min_points=5 --dry-run   # after `make repro`",
    ),
    "calibrate-images": ("astropipe calibrate-images compute.scheduler=synchronous --dry-run",),
    "fits-to-zarr": ("astropipe fits-to-zarr --collection lwa --dry-run",),
    "validate": (
        "astropipe validate --dry-run                       # never fails, writes nothing",
        "astropipe validate validation.fail_on_error=false  # write the reports, exit 0",
    ),
    "ingest": (
        "astropipe ingest --source all --dry-run",
        "astropipe ingest --source tess tess.source=live tess.live.limit=1 --dry-run",
    ),
    "show-config": (
        "astropipe show-config                              # everything",
        "astropipe show-config ztf                          # one section",
        "astropipe show-config ztf.irsa ztf.irsa.filters=[zg,zr]   # a subsection, overridden",
    ),
}

#: ``show-config`` arguments naming a section (``ztf``, ``ztf.irsa``), not overriding a key
_SECTION = re.compile(r"^[A-Za-z_]\w*(\.\w+)*$")


def _epilog(command: str) -> str:
    lines = EXAMPLES.get(command, (f"astropipe {command} --dry-run",))
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _collections() -> list[str]:
    """The collection names in conf/zarr, for ``fits-to-zarr --help`` (empty outside a repo)."""
    try:
        from astropipe.config import conf_dir

        data = yaml.safe_load((conf_dir() / "zarr" / "default.yaml").read_text())
        return sorted(data["collections"])
    except (AstropipeError, OSError, KeyError, TypeError, yaml.YAMLError):
        return []


def _top_level_comma(value: str) -> bool:
    """True when ``value`` has a comma outside brackets, braces, parentheses and quotes."""
    depth, quote = 0, ""
    for ch in value:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            return True
    return False


def check_bare_lists(overrides: Sequence[str]) -> None:
    """Refuse ``key=a,b``: Hydra reads a bare comma as a sweep; a list needs ``[a,b]``.

    Raises
    ------
    ConfigError
        One line naming the override and the bracketed form to write instead.
    """
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and _top_level_comma(value):
            raise ConfigError(
                f"{item}: a list needs brackets: {key}=[{value}] (quoted for the shell: "
                f"'{key}=[{value}]'); a bare comma means a sweep (several runs), which "
                "astropipe does not run."
            )


def _sections(params: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """``{name: params[name...]}`` for each dotted section name; all of ``params`` if none."""
    if not names:
        return params
    out: dict[str, Any] = {}
    for name in names:
        node: Any = params
        for part in name.split("."):
            if not isinstance(node, dict) or part not in node:
                where = sorted(node) if isinstance(node, dict) else []
                raise ConfigError(
                    f"show-config {name}: no section {part!r} there; choose one of {where}."
                )
            node = node[part]
        out[name] = node
    return out


def _progress_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars on stderr (default: only on a terminal, never in CI)",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="astropipe",
        description="Run astropipe stages outside DVC, with Hydra-style overrides of conf/.",
    )
    p.add_argument("--version", action="version", version=f"astropipe {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, _, help_text) in STAGES.items():
        s = sub.add_parser(name, help=help_text, epilog=_epilog(name), formatter_class=_RAW)
        s.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. ztf.on_error=fail")
        s.add_argument("--dry-run", action="store_true", help="print a JSON summary, write nothing")
        s.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default INFO)")
        _progress_flag(s)
        if name == "ingest-ztf":
            s.add_argument("--limit", type=int, default=None, help="read at most N packets/rows")
        if name == "ingest-tess":
            s.add_argument("--limit", type=int, default=None, help="read at most N files")
        if name == "ingest-catalogs":
            s.add_argument("--limit", type=int, default=None, help="keep N rows per catalog")
        if name == "fits-to-zarr":
            s.add_argument(
                "--collection",
                required=True,
                help="a key of zarr.collections: " + (", ".join(_collections()) or "see conf/zarr"),
            )
    ing = sub.add_parser(
        "ingest",
        help="run one or every ingest source; one JSON summary",
        epilog=_epilog("ingest"),
        formatter_class=_RAW,
    )
    ing.add_argument(
        "--source", required=True, choices=CHOICES, help=f"one of {', '.join(CHOICES)} (all: each)"
    )
    ing.add_argument("overrides", nargs="*", help="Hydra overrides, each for its own source")
    ing.add_argument("--dry-run", action="store_true", help="plan and summarise, write nothing")
    ing.add_argument("--limit", type=int, default=None, help="passed to every source run")
    ing.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default INFO)")
    _progress_flag(ing)
    show = sub.add_parser(
        "show-config",
        help="print the composed configuration (or some sections of it) as JSON",
        epilog=_epilog("show-config"),
        formatter_class=_RAW,
    )
    show.add_argument(
        "overrides", nargs="*", help="sections to show (ztf, ztf.irsa) and Hydra overrides (k=v)"
    )
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
        progress=progress_wanted(args.progress),
    )
    sys.stdout.write(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``astropipe`` console script."""
    args = _parser().parse_args(argv)
    setup_logging(getattr(args, "log_level", None))
    try:
        sections: list[str] = []
        if args.command == "show-config":
            sections = [o for o in args.overrides if _SECTION.match(o)]
            args.overrides = [o for o in args.overrides if o not in sections]
        check_bare_lists(args.overrides)
        if args.command == "ingest":  # before composing, which would check the unused section
            check_overrides(args.overrides, selected(args.source))
        params = compose(args.overrides)
        if args.command == "show-config":
            sys.stdout.write(dumps_json(_sections(params, sections)))
            return 0
        if args.command == "ingest":
            return _ingest(args, params)
        kwargs: dict[str, Any] = {"dry_run": args.dry_run}
        if args.command in ("ingest-ztf", "ingest-tess", "ingest-catalogs"):
            kwargs["limit"] = args.limit
        if args.command == "fits-to-zarr":
            kwargs["collection"] = args.collection
        runner = _runner(args.command)
        if "progress" in inspect.signature(runner).parameters:  # the stages with long loops
            kwargs["progress"] = progress_wanted(args.progress)
        summary = runner(params, **kwargs)
    except AstropipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
