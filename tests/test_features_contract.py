"""The features contract (validation) on flux and magnitude rows from compute_features."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from astropipe.features import compute_features  # noqa: E402
from test_features_oracle import _curves  # noqa: E402

pytestmark = pytest.mark.slow  # a Great Expectations context takes ~30 s to build


def test_features_contract_passes_flux_and_magnitude_rows(gx_context: object) -> None:
    import pyarrow as pa

    from astropipe.features.output import FEATURES_SCHEMA, with_survey
    from astropipe.validation.config import RangesConfig, TableConfig
    from astropipe.validation.runner import validate_frame
    from astropipe.validation.suites import features_contract

    pts = _curves(3, n_curves=6)
    pts["band"] = "zg"
    pts["survey"] = "ZTF"  # MJD 58000-58500 is ZTF's era (not TESS's: from 58300)
    feats = with_survey(compute_features(pts), pts)
    df = pa.Table.from_pandas(feats, schema=FEATURES_SCHEMA, preserve_index=False).to_pandas()
    contract = features_contract(
        TableConfig(path="f.parquet", build="make f", completeness={"object_id": 1.0}),
        RangesConfig(),
    )
    report = validate_frame(df, contract, path="f", context=gx_context)
    # flux groups (mean ~1000) are outside the magnitude range but are not magnitudes
    assert report.success, [(o.rule, o.observed) for o in report.failed]
    df.loc[0, "mean"] = 99.0  # a magnitude group (obj000) with an impossible mean
    report = validate_frame(df, contract, path="f", context=gx_context)
    assert [o.column for o in report.failed] == ["mean"]
