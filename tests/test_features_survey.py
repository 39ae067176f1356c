"""The features table's ``survey`` column: one survey per (object_id, band) group."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from astropipe.features import compute_features
from astropipe.features.output import FEATURES_SCHEMA, SurveyMixError, with_survey


def _points(object_ids: list[str], surveys: list[str], bands: list[str]) -> pd.DataFrame:
    parts = []
    for oid, survey, band in zip(object_ids, surveys, bands, strict=True):
        t = 55000.0 + np.arange(5, dtype=np.float64)
        parts.append(
            pd.DataFrame(
                {
                    "object_id": oid,
                    "band": band,
                    "survey": survey,
                    "mjd": t,
                    "value": [1.0, 1.1, 0.9, 1.05, 0.95],
                    "err": 0.01,
                    "kind": "flux",
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def test_each_row_gets_its_groups_survey_after_band() -> None:
    pts = _points(["KIC 1", "EPIC 2", "TIC 3"], ["Kepler", "K2", "TESS"], ["Kepler"] * 2 + ["TESS"])
    feats = with_survey(compute_features(pts), pts)
    assert list(feats.columns[:4]) == ["object_id", "band", "survey", "n_obs"]
    assert feats[["object_id", "survey"]].values.tolist() == [
        ["EPIC 2", "K2"],
        ["KIC 1", "Kepler"],
        ["TIC 3", "TESS"],
    ]
    table = pa.Table.from_pandas(feats, schema=FEATURES_SCHEMA, preserve_index=False)
    assert table.schema.names[:3] == ["object_id", "band", "survey"]


def test_a_group_of_two_surveys_is_refused_in_one_line() -> None:
    pts = _points(["X 1", "X 1"], ["Kepler", "K2"], ["Kepler", "Kepler"])
    with pytest.raises(SurveyMixError) as info:
        with_survey(compute_features(pts), pts)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg == (
        "features.inputs: object 'X 1' band 'Kepler' has points of several surveys "
        "['K2', 'Kepler']; give each survey's objects distinct object_id values."
    )
