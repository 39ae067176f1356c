"""The mast_observations / mast_products contracts on ingest_mast's sample outputs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from astropipe.mast.stage import run
from astropipe.validation.config import RangesConfig, TableConfig
from astropipe.validation.mast import MAST_BUILDERS
from astropipe.validation.runner import validate_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("mast")
    shutil.copytree(ROOT / "data/sample/mast", work / "data/sample/mast")
    params = {"mast": yaml.safe_load((ROOT / "conf/mast/default.yaml").read_text())}
    cwd = Path.cwd()
    try:
        os.chdir(work)
        run(params)
    finally:
        os.chdir(cwd)
    return work / "data/raw/mast"


def _report(name: str, path: Path, gx_context: Any, **completeness: float):
    table = TableConfig(path=str(path), build="dvc repro ingest_mast", completeness=completeness)
    return validate_file(path, MAST_BUILDERS[name](table, RangesConfig()), context=gx_context)


def test_sample_outputs_pass(outputs: Path, gx_context: Any) -> None:
    obs = _report("mast_observations", outputs / "observations.parquet", gx_context,
                  obs_id=1.0, obsid=1.0, s_ra=1.0)  # fmt: skip
    prod = _report("mast_products", outputs / "products.parquet", gx_context, dataURI=1.0)
    assert obs.success, [o.rule for o in obs.failed]
    assert prod.success, [o.rule for o in prod.failed]
    assert obs.rows == 15 and prod.rows == 22


def test_bad_rows_fail_and_are_named(outputs: Path, tmp_path: Path, gx_context: Any) -> None:
    t = pq.read_table(outputs / "observations.parquet")
    ra = t.column("s_ra").to_pylist()
    ra[0] = 400.0
    t_max = t.column("t_max").to_pylist()
    t_max[1] = t.column("t_min")[1].as_py() - 1.0
    t = t.set_column(t.schema.get_field_index("s_ra"), "s_ra", pa.array(ra))
    t = t.set_column(t.schema.get_field_index("t_max"), "t_max", pa.array(t_max))
    t = pa.concat_tables([t, t.slice(2, 1)])  # a repeated (obsid, objID)
    bad = tmp_path / "observations.parquet"
    pq.write_table(t, bad)
    report = _report("mast_observations", bad, gx_context)
    failed = {o.rule for o in report.failed}
    assert "s_ra in [0, 360) deg (nulls ignored)" in failed
    assert "t_max >= t_min (an observation ends after it starts)" in failed
    assert "(obsid, objID) is unique" in failed
    assert len(failed) == 3

    p = pq.read_table(outputs / "products.parquet")
    uris = p.column("dataURI").to_pylist()
    uris[0] = "../../etc/passwd"
    p = p.set_column(p.schema.get_field_index("dataURI"), "dataURI", pa.array(uris))
    pq.write_table(p, tmp_path / "products.parquet")
    report = _report("mast_products", tmp_path / "products.parquet", gx_context)
    assert {o.rule for o in report.failed} == {"dataURI is a mast: URI"}
