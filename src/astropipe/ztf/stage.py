"""The ``ingest_ztf`` stage: alert packets and DR light curves → ``data/raw/ztf/``.

Outputs (paths from ``ztf.outputs``):

- ``alerts.parquet``: one row per alert (deduplicated on ``candid``);
- ``lightcurves.parquet``: the common light-curve schema, alert candidates and
  ``prv_candidates`` (upper limits flagged) plus DR light curves, unique on
  ``(object_id, mjd, band)``;
- ``packets.parquet``: every packet read, name and SHA-256, in input order (the per-packet
  provenance; the other tables' metadata record its row count and one SHA-256 over it, see
  :mod:`astropipe.ztf.packetlog`);
- ``cutouts/<objectId>/<candid>_<kind>.fits``: decompressed stamps;
- the report (quarantined packets with reasons, skipped tar members, duplicate ``candid``) and
  the metrics JSON.

Packets are decoded on the workers of the ``compute`` group (any scheduler, ``distributed``
included: cluster workers write the stamps to the absolute temporary output path, so they must
share this machine's filesystem). The output directory is built in a temporary sibling and
swapped in at the end, so a failed run leaves the previous output untouched. A run holds
``<outputs.dir>.lock`` while it writes: a second run on the same outputs is refused, and the
holder removes the temporary siblings a killed run left behind (see docs/recovery.md). A run
in which no packet decodes fails instead of replacing good outputs with empty ones.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from astropipe.compute import ComputeConfig
from astropipe.errors import AstropipeError, ConfigError, InputFileError
from astropipe.io.atomic import atomic_dir, remove_stale_temps
from astropipe.io.lock import OutputLock
from astropipe.io.tables import file_metadata, write_json
from astropipe.lightcurve import LIGHTCURVE_UNITS
from astropipe.progress import bar as progress_bar
from astropipe.provenance import provenance
from astropipe.ztf.collector import AlertCollector
from astropipe.ztf.config import ZtfConfig
from astropipe.ztf.dcmag import apply_dc_magnitudes
from astropipe.ztf.ingest import AlertIngest, ingest_packets
from astropipe.ztf.packetlog import PacketLog
from astropipe.ztf.packets import ReadStats, iter_packets
from astropipe.ztf.spill import AlertSpill

__all__ = ["run", "ingest_alerts"]

log = logging.getLogger(__name__)

#: The counts written to ``ztf.outputs.metrics``: what a person compares across experiments
#: (`dvc metrics show`, `dvc exp show`). Breakdowns (schema versions, rows by source, skipped
#: tar members by kind) and new keys stay in the report (``ztf.outputs.report``) only.
METRIC_KEYS = (
    "packets", "alerts", "quarantined", "duplicate_candids",
    "lightcurve_rows", "lightcurve_objects", "cutouts_written",
)  # fmt: skip


ALERT_UNITS = {
    "jd": "d",
    "mjd": "d",
    "ra": "deg",
    "dec": "deg",
    "magpsf": "mag",
    "sigmapsf": "mag",
    "diffmaglim": "mag",
}


def ingest_alerts(
    cfg: ZtfConfig,
    *,
    cutout_dir: Path | None,
    limit: int | None = None,
    progress: bool = False,
    compute: ComputeConfig | None = None,
    sink: AlertSpill | None = None,
    packet_log: PacketLog | None = None,
) -> AlertIngest:
    """Decode every packet under ``cfg.alerts.path``; write stamps below ``cutout_dir``.

    When ``cfg.alerts.nights`` is set, the nights are fetched from the alert archive (into
    ``cfg.alerts.cache_dir``) and their tarballs are read instead of ``cfg.alerts.path``.
    Unreadable, oversized or undecodable packets are quarantined (listed with the reason)
    unless ``cfg.on_error == "fail"``, in which case the first one raises. Tar members that
    are links or devices are skipped and listed in ``skipped_members``.

    Packets are decoded in batches on the workers of ``compute`` (``None``: in this process);
    with ``compute.scheduler=distributed`` the cluster's workers write the stamps to
    ``cutout_dir`` themselves, so they must see it under the same absolute path. ``sink`` and
    ``packet_log`` receive each batch's rows and ``(packet, SHA-256)`` pairs as it is merged
    (see :func:`astropipe.ztf.ingest.ingest_packets`).
    """
    stats = ReadStats()
    max_bytes = cfg.alerts.max_member_bytes
    if cfg.alerts.nights:
        from astropipe.ztf.archive import fetch_nights

        tarballs = fetch_nights(cfg.alerts)
        chained = itertools.chain.from_iterable(
            iter_packets(p, max_bytes=max_bytes, stats=stats) for p in tarballs
        )
        packets = itertools.islice(chained, limit)
    else:
        packets = iter_packets(cfg.alerts.path, limit=limit, max_bytes=max_bytes, stats=stats)
    packets = progress_bar(packets, enabled=progress, desc="alerts", unit="pkt")  # stderr only
    result = ingest_packets(
        packets,
        keep_jpeg=cfg.alerts.jpeg_cutouts == "keep",
        cutout_dir=cutout_dir if cfg.alerts.cutouts else None,
        fail=cfg.on_error == "fail",
        compute=compute,
        batch_size=cfg.alerts.batch_size,
        sink=sink,
        packet_log=packet_log,
    )
    result.skipped_members = stats.skipped
    return result


def _alert_lightcurves(collector: AlertCollector, cfg: ZtfConfig | None = None) -> pd.DataFrame:
    """Light-curve rows of the alerts (DC magnitudes where ``cfg.alerts.dc_magnitudes``)."""
    return _alert_frame(pd.DataFrame(collector.lightcurve_columns()), cfg)


def _alert_frame(df: pd.DataFrame, cfg: ZtfConfig | None = None) -> pd.DataFrame:
    """``df`` (light-curve columns of alerts) with survey/source and DC magnitudes."""
    df["survey"] = "ZTF"
    df["source"] = "alert"
    if cfg is not None and cfg.alerts.dc_magnitudes and len(df):
        df = apply_dc_magnitudes(df, max_distnr=cfg.alerts.dc_max_distnr)
    return df


def _dr_lightcurves(cfg: ZtfConfig) -> tuple[pd.DataFrame, dict[str, str], dict[str, Any] | None]:
    """Light curves from the configured DR source: bulk Parquet (sample) or IRSA (live)."""
    if cfg.source == "irsa":
        from astropipe.ztf.irsa import fetch_lightcurves

        frame, prov = fetch_lightcurves(cfg.irsa)
        return frame, prov["responses"], prov["query"]
    if cfg.dr.path is None:
        return pd.DataFrame(), {}, None
    from astropipe.ztf.dr import read_dr_lightcurves

    frame, hashes = read_dr_lightcurves(cfg.dr)
    return frame, hashes, None


def _planned_nights(cfg: ZtfConfig) -> list[dict[str, Any]]:
    """The archive nights a real run would read: URL, cache path, and whether it is cached."""
    from astropipe.sources.http import safe_url
    from astropipe.ztf.archive import plan_nights

    return [
        {"night": n.night, "url": safe_url(n.url), "cache": str(n.path), "cached": n.cached}
        for n in plan_nights(cfg.alerts)
    ]


def _summary(ingest: AlertIngest, n_alerts: int, lc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "packets": ingest.packets,
        "alerts": n_alerts,
        "quarantined": len(ingest.quarantined),
        "duplicate_candids": len(ingest.duplicates),
        "tar_members_skipped": _kinds(ingest.skipped_members),
        "schema_versions": dict(sorted(ingest.collector.versions.items())),
        "lightcurve_rows": lc["rows"],
        "lightcurve_upper_limits": lc["upper_limits"],
        "lightcurve_objects": lc["objects"],
        "lightcurve_rows_by_source": lc["by_source"],
        "lightcurve_rows_skipped_no_object_id": ingest.collector.lc_skipped_no_object,
        "cutouts_written": ingest.stamps_written,
        "jpeg_cutouts_skipped": ingest.collector.jpeg_skipped,
    }


def _provenance_params(ztf: Mapping[str, Any]) -> dict[str, Any]:
    """The ``ztf`` params recorded in the outputs: without ``alerts.batch_size``, which changes
    memory use only, never a byte of the outputs."""
    out = dict(ztf)
    if isinstance(out.get("alerts"), Mapping):
        out["alerts"] = {k: v for k, v in out["alerts"].items() if k != "batch_size"}
    return out


def _kinds(skipped: list[dict[str, str]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in skipped:
        out[s["kind"]] = out.get(s["kind"], 0) + 1
    return dict(sorted(out.items()))


def check_limit(limit: int | None) -> None:
    """Refuse a ``--limit`` that is not a positive integer (0 or -1 would read nothing)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(
            f"--limit {limit}: expected a positive number of packets/rows, or no --limit to read "
            "everything; nothing was read or written."
        )


def _all_undecodable(cfg: ZtfConfig, ingest: AlertIngest, out_dir: Path) -> InputFileError:
    first = ingest.quarantined[0]["reason"] if ingest.quarantined else "no reason recorded"
    where = f"ztf.alerts.nights={cfg.alerts.nights}" if cfg.alerts.nights else cfg.alerts.path
    return InputFileError(
        f"{where}: 0 of {ingest.packets} packets decodable (first: {first}); nothing written, "
        f"{out_dir} keeps its previous content — fix the input or point ztf.alerts.path at "
        "good packets."
    )


def run(
    params: Mapping[str, Any],
    *,
    dry_run: bool = False,
    limit: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run ingest_ztf with the ``ztf`` section of ``params``.

    Parameters
    ----------
    params
        The composed parameters (params.yaml or :func:`astropipe.config.compose`).
    dry_run
        Decode and summarise, but write nothing and make no network request (the decoded
        rows are streamed to a scratch directory that is removed, as a real run streams them:
        memory does not grow with the night).
    limit
        Read at most this many alert packets (and keep at most this many live rows).
    progress
        Show a progress bar.

    Returns
    -------
    dict
        The stage metrics (also written to ``ztf.outputs.metrics`` unless ``dry_run``).
    """
    check_limit(limit)
    cfg = ZtfConfig.from_params(params)
    compute = ComputeConfig.from_params(params)
    if dry_run:
        summary: dict[str, Any] = {"dry_run": True, "source": cfg.source}
        if cfg.alerts.nights:  # nothing is downloaded, so nothing is decoded
            summary["archive_nights"] = _planned_nights(cfg)
        else:
            summary.update(_dry_run_alerts(cfg, limit, progress, compute))
        summary["outputs"] = asdict(cfg.outputs)
        if cfg.source == "irsa":
            from astropipe.sources.http import safe_url
            from astropipe.ztf.irsa import irsa_query_params

            summary["irsa_requests"] = [
                {"url": safe_url(cfg.irsa.url), "params": q} for q in irsa_query_params(cfg.irsa)
            ]
            summary["limit"] = limit if limit is not None else cfg.irsa.limit
        else:
            summary["dr_path"] = cfg.dr.path
        return summary

    out = cfg.outputs
    out_dir = Path(out.dir)
    for name in ("alerts", "lightcurves", "packets", "cutouts"):
        target = Path(getattr(out, name))
        if out_dir.resolve() not in target.resolve().parents:
            raise AstropipeError(
                f"ztf.outputs.{name}={target} is outside ztf.outputs.dir={out_dir}; "
                "keep every ingest_ztf output under one directory (it is one DVC output)."
            )
    with OutputLock(out_dir, writer="ingest_ztf"):
        # under the lock no other writer is alive: every temporary sibling is a killed run's
        for target in (out_dir, Path(out.report), Path(out.metrics)):
            remove_stale_temps(target)
        summary, report = _write_outputs(cfg, params, out_dir, limit, progress, compute)
        write_json(report, out.report)
        write_json({k: summary[k] for k in METRIC_KEYS}, out.metrics)
    log.info("ingest_ztf: %s", summary)
    return summary


def _dry_run_alerts(
    cfg: ZtfConfig, limit: int | None, progress: bool, compute: ComputeConfig
) -> dict[str, Any]:
    """Decode every packet as a real run does and count, with the memory of a real run.

    The rows and the ``(packet, SHA-256)`` pairs are streamed batch by batch, as in a real run,
    to a scratch directory under the system's temporary directory (``TMPDIR``) that is removed
    at the end: nothing is written under the outputs, and memory does not grow with the night.
    """
    with tempfile.TemporaryDirectory(prefix="astropipe-ingest-ztf-dry-run-") as scratch:
        spill_dir = Path(scratch) / "spill"
        spill_dir.mkdir()
        spill = AlertSpill(spill_dir)
        packet_log = PacketLog(Path(scratch) / "packets.parquet", {}, name=cfg.outputs.packets)
        try:
            ingest = ingest_alerts(
                cfg,
                cutout_dir=None,
                limit=limit,
                progress=progress,
                compute=compute,
                sink=spill,
                packet_log=packet_log,
            )
        finally:
            packet_log.abort()  # the list is not kept: a dry run writes nothing
        return {
            "packets": ingest.packets,
            "alerts_decoded": spill.alerts,
            "quarantined": ingest.quarantined,
            "skipped_members": ingest.skipped_members,
        }


def _write_outputs(
    cfg: ZtfConfig,
    params: Mapping[str, Any],
    out_dir: Path,
    limit: int | None,
    progress: bool,
    compute: ComputeConfig,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build every output in a temporary sibling of ``out_dir`` and swap it in."""
    out = cfg.outputs
    params_used = _provenance_params(params["ztf"])
    with atomic_dir(out_dir) as tmp:
        rel = lambda p: tmp / Path(p).resolve().relative_to(out_dir.resolve())  # noqa: E731
        spill_dir = tmp / ".spill"  # inside the temporary output: a killed run's is removed
        spill_dir.mkdir()
        spill = AlertSpill(spill_dir)
        packet_log = PacketLog(
            rel(out.packets),
            file_metadata(_packets_provenance(params_used, cfg), {}),
            name=out.packets,
        )
        try:
            ingest = ingest_alerts(
                cfg,
                cutout_dir=rel(out.cutouts),
                limit=limit,
                progress=progress,
                compute=compute,
                sink=spill,
                packet_log=packet_log,
            )
        except BaseException:
            packet_log.abort()
            raise
        packets = packet_log.close()
        if ingest.packets and not spill.alerts:
            raise _all_undecodable(cfg, ingest, out_dir)
        dr_frame, dr_inputs, query = _dr_lightcurves(cfg)
        if limit is not None and cfg.source == "irsa":
            dr_frame = dr_frame.head(limit)
        prov = {
            **provenance(
                stage="ingest_ztf",
                inputs=dr_inputs,
                params=params_used,
                source=cfg.source,
                query=query,
            ),
            "packets": packets,  # the per-packet list is packets.parquet; this its digest
        }
        n_alerts = spill.write_alerts(rel(out.alerts), file_metadata(prov, ALERT_UNITS))
        lc = spill.write_lightcurves(
            rel(out.lightcurves),
            file_metadata(
                {**prov, "time_scale": {"alert": "UTC", "dr": "UTC", "irsa": "UTC"}},
                LIGHTCURVE_UNITS,
            ),
            alert_frame=lambda part: _alert_frame(part, cfg),
            dr_frame=dr_frame,
        )
        shutil.rmtree(spill_dir)
        summary = _summary(ingest, n_alerts, lc)
    report = {
        **summary,
        "quarantined": ingest.quarantined,
        "skipped_members": ingest.skipped_members,
        "duplicate_candids": ingest.duplicates,
        "packets_read": packets,
    }
    return summary, report


def _packets_provenance(params: Mapping[str, Any], cfg: ZtfConfig) -> dict[str, Any]:
    """Provenance of ``packets.parquet``: the stage, version and params (it lists the inputs)."""
    prov = provenance(stage="ingest_ztf", inputs={}, params=params, source=cfg.source)
    return {k: v for k, v in prov.items() if k not in ("inputs", "inputs_sha256")}
