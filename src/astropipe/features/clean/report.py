"""Small tables for ``dvc plots``: raw vs cleaned light curves, and feature distributions.

CSV, not PNG: matplotlib PNGs carry renderer details that need not be byte-stable across
versions and machines, while DVC renders these CSVs itself (``dvc plots show``), so the
committed hashes stay put. Numbers are written with ``repr`` precision (shortest round-trip).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from astropipe.features.clean import masks as M
from astropipe.io.atomic import atomic_path

__all__ = ["lightcurve_plot_table", "feature_plot_table", "write_csv"]


def _pick(table: pd.DataFrame, objects: Sequence[str], max_objects: int) -> list[tuple]:
    keys = ["object_id", "band", "source"]
    counts = table.groupby(keys, sort=True).size()
    if objects:
        chosen = [k for k in counts.index if k[0] in set(objects)]
    else:
        # The curves with the most points, ties by name: a stable, data-driven choice.
        order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        chosen = [k for k, _ in order]
    return chosen[:max_objects]


def lightcurve_plot_table(
    table: pd.DataFrame,
    *,
    objects: Sequence[str] = (),
    max_objects: int = 3,
    max_points: int = 2000,
) -> pd.DataFrame:
    """Raw and cleaned values of a few light curves, each scaled by its raw median.

    Columns ``curve, mjd, raw, clean, removed_by``; ``clean`` is empty for removed points and
    ``removed_by`` names the step. Every ``k``-th point is kept (``k = ceil(n / max_points)``).
    """
    rows = []
    for key in _pick(table, objects, max_objects):
        sel = table[
            (table["object_id"] == key[0]) & (table["band"] == key[1]) & (table["source"] == key[2])
        ]
        n = len(sel)
        k = -(-n // max_points)
        sel = sel.iloc[::k]
        raw = sel["raw_value"].to_numpy(np.float64)
        med = np.nanmedian(raw) if np.isfinite(raw).any() else 1.0
        is_flux = (sel["kind"] == "flux").all()
        cm = sel["clean_mask"].to_numpy(np.uint16)
        rows.append(
            pd.DataFrame(
                {
                    "curve": f"{key[0]} {key[1]} {key[2]}",
                    "mjd": sel["mjd"].to_numpy(),
                    "raw": raw / med if is_flux else raw,
                    "clean": sel["value"].to_numpy(),
                    "removed_by": [",".join(M.describe(int(v & M.REMOVED))) for v in cm],
                }
            )
        )
    if not rows:
        return pd.DataFrame(columns=["curve", "mjd", "raw", "clean", "removed_by"])
    return pd.concat(rows, ignore_index=True)


def feature_plot_table(feats: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """One row per (object_id, band) with the named feature columns present in ``feats``."""
    cols = ["object_id", "band"] + [c for c in columns if c in feats.columns]
    return feats[cols].reset_index(drop=True)


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` atomically as CSV (no index, full float precision)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format=None, lineterminator="\n")
    return Path(path)
