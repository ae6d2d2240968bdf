"""Issue 15, item 6: the `recon` conf reaches every runner unchanged (Globus Compute and SFAPI run the same code
with the same options), and the options a run used land in the results (the Zarr attrs) on data832."""

from __future__ import annotations

import uuid

import pytest

from include.paths import parse_scan
from include.sites import load_sites
from tests.dags.dag_helpers import load_dag, states, write_scan

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]

OPTIONS = {"ring_method": "ti", "center_method": "vo", "cast": "uint16", "outliers_1d": True, "rows": "1:3"}


def used_options(local_endpoints, results: str) -> dict:
    """The ``reconstruction`` attrs of a result's OME-Zarr on data832_scratch (what the run used)."""
    import zarr

    group = zarr.open_group(str(local_endpoints["data832_scratch"].posix_path(f"{results}.zarr")), mode="r")
    return dict(group.attrs["reconstruction"]["options"])


@pytest.mark.parametrize("site,source", [("local", "data832_raw"), ("nersc", "nersc832_alsdev_raw")])
def test_every_runner_reconstructs_with_the_conf_unchanged(site, source, facility, local_endpoints):
    folder = f"BLS-00015_opts{uuid.uuid4().hex[:6]}"
    scan = f"{folder}/20260101_120000_sample.h5"
    write_scan(local_endpoints, source, scan)
    dag_run = load_dag(f"bl832_{site}_recon", "bl832_recon.py").test(run_conf={"file_path": scan, "recon": OPTIONS})
    assert dag_run.state == "success", states(dag_run)
    results = str(parse_scan(scan).results(load_sites()[site]).tiff)
    used = used_options(local_endpoints, results)
    for key, value in OPTIONS.items():
        assert used[key] == value, (site, key, used.get(key))
    tiffs = sorted(local_endpoints["data832_scratch"].posix_path(results).glob("*.tiff"))
    assert [t.name[-10:] for t in tiffs] == ["00001.tiff", "00002.tiff"]  # rows 1:3, and only those


def test_an_unknown_option_is_refused_before_anything_moves(facility):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        load_dag("bl832_local_recon", "bl832_recon.py").test(run_conf={"file_path": "f/s.h5", "recon": {"x": 1}})
    assert facility.stats().get("compute.submit", 0) == 0
