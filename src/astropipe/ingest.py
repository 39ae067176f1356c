"""One command for every source: ``astropipe ingest --source ztf|tess|mast|catalogs|all``.

Each source is its stage's library ``run(params, dry_run=, limit=, progress=)``, called with one
composition of conf/ and the command's overrides. Overrides are per source: an override of a
source's group (``ztf.irsa.ra=…``) reaches only that source's section, and naming one for a
source that is not selected is refused (it would silently do nothing). A source whose stage
is not in this tree is reported as ``not available`` with the reason, never run or faked.
Sources run in pipeline order (catalogs last: its ``objects`` table links to the light curves
ingested before it); one failing source does not stop the others, and the summary says which
failed and why.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from astropipe.errors import AstropipeError, ConfigError

__all__ = ["Source", "SOURCES", "CHOICES", "selected", "check_overrides", "ingest"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """One ingest source: its conf/ group, library module and DVC stage."""

    name: str
    group: str
    module: str
    stage: str

    @property
    def path(self) -> str:
        """The module's file in the source tree (named when it does not exist)."""
        return "src/" + self.module.replace(".", "/") + ".py"


#: The sources, in the order ``--source all`` runs them.
SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("ztf", "ztf", "astropipe.ztf.stage", "ingest_ztf"),
        Source("tess", "tess", "astropipe.tess.stage", "ingest_tess"),
        Source("mast", "mast", "astropipe.mast.stage", "ingest_mast"),
        Source("catalogs", "catalogs", "astropipe.catalogs.stage", "ingest_catalogs"),
    )
}
#: What ``--source`` accepts.
CHOICES = (*SOURCES, "all")


def selected(choice: str) -> list[Source]:
    """The sources ``--source choice`` runs, in order."""
    if choice == "all":
        return list(SOURCES.values())
    if choice not in SOURCES:
        raise ConfigError(f"--source {choice}: unknown source; choose one of {list(CHOICES)}.")
    return [SOURCES[choice]]


def _override_group(override: str) -> str:
    key = override.split("=", 1)[0].lstrip("+~")
    return key.split(".", 1)[0].split("@", 1)[0]


def check_overrides(overrides: Sequence[str], sources: Sequence[Source]) -> None:
    """Refuse an override of an ingest source's group when that source is not selected."""
    chosen = {s.group for s in sources}
    for override in overrides:
        group = _override_group(override)
        owner = next((s for s in SOURCES.values() if s.group == group), None)
        if owner is not None and group not in chosen:
            names = ", ".join(s.name for s in sources)
            raise ConfigError(
                f"{override}: an override of `{group}`, which only --source {owner.name} reads, "
                f"but --source selects {names}; overrides apply to their own source only: "
                f"use --source {owner.name} or --source all, or drop it."
            )


def _unavailable(source: Source, params: Mapping[str, Any]) -> str | None:
    """Why ``source`` cannot run in this tree, or None."""
    try:
        spec = importlib.util.find_spec(source.module)
    except ModuleNotFoundError:  # its package is missing too
        spec = None
    if spec is None:
        return (
            f"{source.path} does not exist in this tree: the {source.stage} stage is not built yet"
        )
    if source.group not in params:
        return f"conf/ has no `{source.group}` group: the {source.stage} stage is not wired yet"
    return None


def _call(source: Source, params: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    run = importlib.import_module(source.module).run
    accepted = inspect.signature(run).parameters
    if options.get("limit") is not None and "limit" not in accepted:
        raise ConfigError(f"--limit: {source.stage} has no limit; run it without --limit.")
    kwargs = {k: v for k, v in options.items() if k in accepted}
    result: dict[str, Any] = run(params, **kwargs)
    return result


def ingest(
    params: Mapping[str, Any],
    sources: Sequence[Source],
    *,
    dry_run: bool = False,
    limit: int | None = None,
    progress: bool = False,
) -> tuple[dict[str, Any], bool]:
    """Run (or dry-run) each source; return the consolidated summary and whether all succeeded.

    Returns
    -------
    tuple
        ``{"dry_run", "limit", "order", "sources": {name: {"stage", "status", "summary" |
        "reason" | "error"}}}`` with status ``ok``, ``error`` or ``not available``; and False when a
        source failed, or when a source asked for by name is not available.
    """
    report: dict[str, Any] = {}
    ok = True
    for source in sources:
        entry: dict[str, Any] = {"stage": source.stage}
        reason = _unavailable(source, params)
        if reason is not None:
            entry |= {"status": "not available", "reason": reason}
            ok = ok and len(sources) > 1  # asked for by name: that is a failure
            log.warning("%s: not available: %s", source.name, reason)
        else:
            try:
                summary = _call(source, params, dry_run=dry_run, limit=limit, progress=progress)
                entry |= {"status": "ok", "summary": summary}
            except AstropipeError as exc:
                entry |= {"status": "error", "error": str(exc)}
                ok = False
                log.error("%s: %s", source.name, exc)
        report[source.name] = entry
    order = [s.name for s in sources]  # JSON output sorts keys: the run order is kept here
    return {"dry_run": dry_run, "limit": limit, "order": order, "sources": report}, ok
