"""SciCat operators on the local profile: endpoint names resolved, the stand-in reached through the hook."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest

from als_provider.operators.scicat import SciCatIngestDerivedOperator, SciCatIngestRawOperator
from compute_functions.sample_scan import write_sample_scan
from include.errors import InvalidPathError
from include.scicat_metadata import thumbnail_png


@pytest.fixture(scope="module")
def template_scan(tmp_path_factory) -> Path:
    return write_sample_scan(tmp_path_factory.mktemp("scan") / "20230224_132553_sea_shell.h5", size="tiny")


@pytest.fixture
def on_data832(template_scan, local_endpoints) -> str:
    """A scan placed in data832's raw tree; returns the path as the beamline reports it."""
    folder = f"BLS-{uuid.uuid4().hex[:6]}_dyparkinson"
    target = local_endpoints["data832_raw"].posix_path(f"{folder}/{template_scan.name}")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(template_scan, target)
    return f"/global/raw/{folder}/{template_scan.name}"


def test_raw_operator_returns_the_pid_and_is_idempotent(facility, on_data832):
    op = SciCatIngestRawOperator(task_id="scicat_raw", file_path=on_data832)
    first = op.execute(context={})
    folder = on_data832.split("/")[3]
    assert first["source_folder"] == f"/data/raw/{folder}"
    assert first["dataset_name"] == "20230224_132553_sea_shell" and first["pid"]
    assert op.execute(context={}) == first
    assert facility.stats()["scicat.dataset_created"] == 1


def test_raw_operator_refuses_bad_paths_and_missing_scans(facility):
    with pytest.raises(InvalidPathError):
        SciCatIngestRawOperator(task_id="t", file_path="../etc/x.h5").execute(context={})
    with pytest.raises(FileNotFoundError, match="not on data832_raw"):
        SciCatIngestRawOperator(task_id="t", file_path="nofolder/none.h5").execute(context={})
    assert "scicat.dataset_created" not in facility.stats()


def test_derived_operator_finds_the_raw_dataset_and_links_to_it(facility, on_data832, local_endpoints):
    raw = SciCatIngestRawOperator(task_id="scicat_raw", file_path=on_data832).execute(context={})
    folder, name = on_data832.split("/")[3:5]
    stem = name[: -len(".h5")]
    results = local_endpoints["data832_scratch"].posix_path(f"{folder}/nersc")
    (results / f"rec{stem}").mkdir(parents=True)
    (results / f"rec{stem}" / f"{stem}_00000.tiff").write_bytes(b"\0" * 8)
    (results / f"rec{stem}.zarr").mkdir()
    (results / f"rec{stem}.zarr" / "zarr.json").write_text("{}")
    (results / "preview.png").write_bytes(thumbnail_png(np.arange(1.0, 257.0).reshape(16, 16)))
    op = SciCatIngestDerivedOperator(
        task_id="scicat_derived",
        file_path=on_data832,
        results_folder=f"{folder}/nersc",
        site="nersc",
        parameters=json.dumps({"engine": "gridrec", "center": 64.0}),
        preview_path=f"{folder}/nersc/preview.png",
    )
    out = op.execute(context={})
    assert out["raw_pid"] == raw["pid"] and out["dataset_name"] == f"rec{stem}_nersc"
    assert out["source_folder"] == f"/data/scratch/globus_share/{folder}/nersc"
    assert op.execute(context={}) == out
    stats = facility.stats()
    assert stats["scicat.dataset_created"] == 2 and stats["scicat.attachment_created"] == 2


def test_derived_operator_without_a_catalogued_scan_fails(facility):
    op = SciCatIngestDerivedOperator(task_id="d", file_path="F-1_x/never.h5", results_folder="F-1_x/alcf", site="alcf")
    with pytest.raises(LookupError, match="ingest the scan first"):
        op.execute(context={})
    assert "scicat.dataset_created" not in facility.stats()


def test_templated_fields():
    assert {"file_path", "endpoint"} <= set(SciCatIngestRawOperator.template_fields)
    assert {"file_path", "raw_pid", "results_folder", "parameters", "preview_path", "site"} <= set(
        SciCatIngestDerivedOperator.template_fields
    )
