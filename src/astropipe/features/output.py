"""The stage's output tables and the CSV writer that streams them.

The Parquet outputs are streamed row group by row group with
:class:`astropipe.io.tables.ParquetRowGroups` (the bytes never depend on how the rows were
handed over). :class:`CsvRows` appends CSV rows with the header once, as
:func:`~astropipe.features.clean.report.write_csv` writes a whole frame.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow as pa

from astropipe.errors import AstropipeError
from astropipe.features.extract import OUTPUT_COLUMNS
from astropipe.io.atomic import atomic_path

__all__ = [
    "FEATURES_SCHEMA",
    "FEATURE_UNITS",
    "CLEAN_GROUP_ROWS",
    "FEATURES_GROUP_ROWS",
    "SurveyMixError",
    "with_survey",
    "CsvRows",
]

FEATURES_SCHEMA = pa.schema(
    [
        pa.field("object_id", pa.string(), nullable=False),
        pa.field("band", pa.string(), nullable=False),
        # the light curves' survey (ZTF, TESS, Kepler, K2): the validate stage checks each
        # row's band and MJD against its survey's range
        pa.field("survey", pa.string(), nullable=False),
    ]
    + [pa.field(c, pa.int64() if c == "n_obs" else pa.float64()) for c in OUTPUT_COLUMNS]
)
FEATURE_UNITS = {
    "time_span": "d",
    "mjd_first": "d",
    "mjd_last": "d",
    "mjd_peak": "d",
    "mean": "mag",
    "median": "mag",
    "std": "mag",
    "amplitude": "mag",
    "mad": "mag",
    "mag_peak": "mag",
    "slope": "mag / d",
    "rise_rate": "mag / d",
    "decay_rate": "mag / d",
    # Value columns are in magnitudes for magnitude groups (mag_peak set) and in the light
    # curve's flux unit for flux groups (flux_peak set; TESS/Kepler e-/s).
    "flux_peak": "electron / s",
    "rise_time": "d",
    "decay_time": "d",
    "inter_percentile_range_5": "mag",
    "inter_percentile_range_10": "mag",
    "inter_percentile_range_20": "mag",
    "linear_fit_slope": "mag / d",
    "linear_fit_slope_sigma": "mag / d",
    "ls_period": "d",
    "cdpp": "ppm",
}

#: Rows per row group of ``lightcurves_clean.parquet`` (13 columns: ~15 MB in memory). The
#: sample's 112,980 rows make one group, as ``write_parquet`` wrote them before streaming.
CLEAN_GROUP_ROWS = 1 << 17
#: Rows per row group of ``features.parquet`` (36 columns: ~18 MB in memory).
FEATURES_GROUP_ROWS = 1 << 16


class SurveyMixError(AstropipeError, ValueError):
    """One ``(object_id, band)`` group holds points of more than one survey."""


def with_survey(feats: pd.DataFrame, kept: pd.DataFrame) -> pd.DataFrame:
    """``feats`` with a ``survey`` column after ``band``: the survey of its group's points.

    Raises
    ------
    SurveyMixError
        When a group's points come from two surveys.
    """
    per = kept.groupby(["object_id", "band"], sort=True)["survey"].agg(["first", "nunique"])
    mixed = per[per["nunique"] > 1]
    if len(mixed):
        oid, band = mixed.index[0]
        rows = (kept["object_id"] == oid) & (kept["band"] == band)
        raise SurveyMixError(
            f"features.inputs: object {oid!r} band {band!r} has points of several surveys "
            f"{sorted(kept.loc[rows, 'survey'].unique())}; give each survey's objects distinct "
            "object_id values."
        )
    survey = per["first"].reindex(pd.MultiIndex.from_frame(feats[["object_id", "band"]]))
    out = feats.copy()
    out.insert(2, "survey", survey.to_numpy(object))
    return out


class CsvRows:
    """Append frames to a CSV file (header once, no index, full float precision), written
    through a temporary sibling; a context manager like :class:`ParquetRowGroups`, with the
    same :meth:`finish`."""

    def __init__(self, path: str | Path, columns: list[str]) -> None:
        self._stack = contextlib.ExitStack()
        #: the temporary file being written, renamed onto the output by :meth:`close`
        self.path: Path = self._stack.enter_context(atomic_path(path))
        self._file: IO[str] = self._stack.enter_context(
            open(self.path, "w", encoding="utf-8", newline="")
        )
        self.columns = columns
        self._header = True

    def write(self, df: pd.DataFrame) -> None:
        """Append the rows of ``df`` (its columns must be :attr:`columns`)."""
        if list(df.columns) != self.columns:
            raise ValueError(f"CSV columns {list(df.columns)}, expected {self.columns}")
        if self._header or len(df):
            df.to_csv(
                self._file, index=False, header=self._header, float_format=None, lineterminator="\n"
            )
            self._header = False

    def __enter__(self) -> CsvRows:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self._stack.__exit__(exc_type, exc, tb)

    def finish(self) -> Path:
        """Write the header if no row came and close the file, still under its temporary
        name."""
        if not self._file.closed:
            if self._header:
                self.write(pd.DataFrame(columns=self.columns))
            self._file.close()
        return self.path

    def close(self) -> None:
        """:meth:`finish` and move the file into place."""
        self.finish()
        self._stack.close()
