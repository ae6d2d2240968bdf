"""SciCat operators on the local profile: endpoint names resolved, the stand-in reached through the hook."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import h5py
import numpy as np
import pytest

from als_provider.hooks.scicat import SciCatHook
from als_provider.operators.scicat import SciCatIngestDerivedOperator, SciCatIngestRawOperator
from compute_functions.sample_scan import write_sample_scan
from facility.scicat_samples import write_saxs_exposure
from include.errors import InvalidPathError
from include.scicat_metadata import FILE_NAME, thumbnail_png

#: The operators read Airflow Variables (export-control records, the SciCat backlog).
pytestmark = pytest.mark.usefixtures("airflow_db")


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


def derived_operator(on_data832: str, site: str, **kwargs) -> SciCatIngestDerivedOperator:
    """The derived-dataset operator for ``site``'s results of the scan (in ``<folder>/<site>`` on data832's
    scratch)."""
    folder = on_data832.split("/")[3]
    return SciCatIngestDerivedOperator(
        task_id="scicat_derived", file_path=on_data832, results_folder=f"{folder}/{site}", site=site, **kwargs
    )


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
    parameters = json.dumps({"engine": "gridrec", "center": 64.0})
    op = derived_operator(on_data832, "nersc", parameters=parameters, preview_path=f"{folder}/nersc/preview.png")
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
    assert {"file_path", "endpoint", "source_folder", "long_term_endpoint", "long_term_path", "ingester"} <= set(
        SciCatIngestRawOperator.template_fields
    )
    assert {
        "file_path",
        "raw_pid",
        "results_folder",
        "parameters",
        "preview_path",
        "site",
        "source_folder",
        "raw_source_folder",
    } <= set(SciCatIngestDerivedOperator.template_fields)


def test_raw_operator_records_the_plans_source_folder(facility, on_data832):
    """Issue 22.5: sourceFolder is the plan's, upstream's /global/raw/<folder> (not data832's pruned copy)."""
    from include.paths import parse_scan
    from include.plans import new_file_plan

    folder = on_data832.split("/")[3]
    recorded = new_file_plan(parse_scan(on_data832), offsite=True).scicat_source_folder
    out = SciCatIngestRawOperator(task_id="r", file_path=on_data832, source_folder=recorded).execute(context={})
    assert out["source_folder"] == recorded == f"/global/raw/{folder}"
    assert SciCatHook().get_dataset(out["pid"])["sourceFolder"] == recorded


def test_unknown_ingester_is_refused_before_anything_is_sent(facility, on_data832):
    with pytest.raises(ValueError, match="unknown SciCat ingester 'als_999'"):
        SciCatIngestRawOperator(task_id="r", file_path=on_data832, ingester="als_999")
    templated = SciCatIngestRawOperator(task_id="r", file_path=on_data832, ingester="{{ params.x }}")
    templated.ingester = "als_999"  # as rendered
    with pytest.raises(ValueError, match="known: als_733_saxs, als_832_dx_4"):
        templated.execute(context={})
    assert not {"scicat.login", "scicat.dataset_created"} & set(facility.stats())


def test_733_run_is_one_dataset_per_exposure_with_the_saxs_mapping(facility, local_endpoints):
    """Finding 8 (SciCat half): 7.3.3 uses its own mapping; a run's files are grouped into exposures."""
    folder = f"ALS-07330_saxs{uuid.uuid4().hex[:6]}"
    root = local_endpoints["data733"].posix_path(folder)
    first = write_saxs_exposure(root, "texas_B19_2_3_2m_00001")
    second = write_saxs_exposure(root, "texas_kapton_ctrl_2m_00002", seed=1)
    autoexpose = write_saxs_exposure(root, "autoexpose_00003", seed=2)
    files = [f"{folder}/{p.name}" for p in (*first, *second, *autoexpose)]
    long_term = local_endpoints["nersc733_raw"].globus_path(folder)
    op = SciCatIngestRawOperator(
        task_id="r",
        file_path=json.dumps(files),
        endpoint="data733",
        source_folder=long_term,
        ingester="als733_saxs",  # upstream's spelling
    )
    out = op.execute(context={})
    assert out["dataset_names"] == ["texas_B19_2_3_2m_00001", "texas_kapton_ctrl_2m_00002"]
    first_ds, second_ds = (SciCatHook().get_dataset(pid) for pid in out["pids"])
    assert first_ds["dataFormat"] == "733" and first_ds["instrumentId"] == "ALS 7.3.3"
    assert first_ds["sampleId"] == "B19_2_3" and second_ds["sampleId"] == "kapton_ctrl"
    assert first_ds["sourceFolder"] == long_term and "edf headers" in first_ds["scientificMetadata"]
    assert first_ds["scientificMetadata"]["Exposure time (s)"] == " 2.0"
    blocks = SciCatHook().get_conn().datasets_origdatablocks_get_one(out["pids"][0])
    assert [f["path"] for f in blocks[0]["dataFileList"]] == [p.name for p in first]
    assert op.execute(context={}) == out  # idempotent
    assert facility.stats()["scicat.dataset_created"] == 2


def test_derived_operator_links_the_raw_dataset_at_its_recorded_folder(facility, on_data832, local_endpoints):
    """Finding 2: the derived dataset finds its raw dataset where the raw ingest recorded it (upstream's
    /global/raw/<folder>), links it, and names the results' long-term copy as its sourceFolder."""
    folder, name = on_data832.split("/")[3:5]
    stem = name[: -len(".h5")]
    raw_folder = f"/global/raw/{folder}"
    raw = SciCatIngestRawOperator(task_id="r", file_path=on_data832, source_folder=raw_folder).execute(context={})
    results = local_endpoints["data832_scratch"].posix_path(f"{folder}/nersc")
    (results / f"rec{stem}").mkdir(parents=True)
    (results / f"rec{stem}" / f"{stem}_00000.tiff").write_bytes(b"\0" * 8)
    archive = local_endpoints["nersc832_alsdev_scratch"].globus_path(f"{folder}/nersc")
    out = derived_operator(on_data832, "nersc", source_folder=archive, raw_source_folder=raw_folder).execute(context={})
    derived = SciCatHook().get_dataset(out["pid"])
    assert out["raw_pid"] == raw["pid"] and derived["inputDatasets"] == [raw["pid"]]
    assert derived["sourceFolder"] == archive
    link = derived["scientificMetadata"]["raw_dataset"]
    assert (link["sourceFolder"], link["proposalId"]) == (raw_folder, "ALS-11234")
    assert derived["scientificMetadata"]["tiff"]["location"] == f"{archive}/rec{stem}"
    assert derived["accessGroups"] == ["8.3.2"]


def test_derived_operator_finds_a_raw_dataset_named_by_the_scans_file_name(facility, on_data832, local_endpoints):
    folder, name = on_data832.split("/")[3:5]
    with h5py.File(local_endpoints["data832_raw"].posix_path(f"{folder}/{name}"), "a") as f:
        del f[FILE_NAME]
        f[FILE_NAME] = np.array([b"sea_shell_as_named_by_the_beamline"])
    raw = SciCatIngestRawOperator(task_id="r", file_path=on_data832).execute(context={})
    assert raw["dataset_name"] == "sea_shell_as_named_by_the_beamline"
    (local_endpoints["data832_scratch"].posix_path(f"{folder}/alcf")).mkdir(parents=True)
    out = derived_operator(on_data832, "alcf").execute(context={})
    assert out["raw_pid"] == raw["pid"]


@pytest.fixture
def backlog(airflow_db):
    """The SciCat backlog (Airflow Variables), emptied before and after."""
    from include.catalogue_backlog import KEY_PREFIX, settle
    from include.manifests import MetadataDbVariables

    store = MetadataDbVariables()
    settle(store.keys(KEY_PREFIX), store=store)
    yield store
    settle(store.keys(KEY_PREFIX), store=store)


def test_i21_finding_6_a_derived_step_of_a_scan_whose_raw_registration_is_owed_fails_not_skips(
    facility, on_data832, local_endpoints, backlog
):
    """A standalone bl832_<site>_recon (skip_uncatalogued) of a scan whose raw registration is owed must not
    skip its derived dataset: it fails without retry, so finish records it as owed too."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from include.catalogue_backlog import OwedRegistration, record

    op = derived_operator(on_data832, "local", skip_uncatalogued=True)
    with pytest.raises(AirflowSkipException):  # never catalogued, nothing owed (export-controlled): skipped
        op.execute(context={})
    owed = OwedRegistration("raw", {"file_path": on_data832, "endpoint": "data832_raw"}, "bl832_dispatcher", "r1", "t")
    record([owed], store=backlog)
    with pytest.raises(AirflowFailException, match=r"raw dataset of .* is still owed .*derived dataset is owed too"):
        op.execute(context={})
    assert "scicat.dataset_created" not in facility.stats()


def test_i21_finding_6_the_raw_registration_reads_the_long_term_copy_when_data832_is_gone(
    facility, on_data832, local_endpoints, airflow_db
):
    """An owed registration replayed after prune removed data832's copy reads the long-term copy it names
    (``long_term_endpoint``/``long_term_path``, the plan's ``source_path``) and records the plan's sourceFolder."""
    from include.paths import parse_scan
    from include.plans import new_file_plan

    folder, name = on_data832.split("/")[3:5]
    planned = new_file_plan(parse_scan(on_data832), offsite=True)
    long_term = local_endpoints["nersc832"].posix_path(planned.source_path)
    long_term.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(local_endpoints["data832_raw"].posix_path(f"{folder}/{name}"), long_term)
    kwargs = {"source_folder": planned.scicat_source_folder, "long_term_endpoint": "nersc832"}
    out = SciCatIngestRawOperator(
        task_id="r", file_path=on_data832, long_term_path=planned.source_path, **kwargs
    ).execute(context={})
    stored = SciCatHook().get_dataset(out["pid"])
    assert stored["sourceFolder"] == f"/global/raw/{folder}" and stored["size"] == long_term.stat().st_size
    with pytest.raises(FileNotFoundError, match=r"not on data832_raw .*nor at its long-term copy .*other\.h5"):
        SciCatIngestRawOperator(
            task_id="r", file_path=f"{folder}/other.h5", long_term_path=f"raw/{folder}/other.h5", **kwargs
        ).execute(context={})
    with pytest.raises(ValueError, match="2 long_term_path"):
        SciCatIngestRawOperator(
            task_id="r", file_path=on_data832, long_term_path=[planned.source_path] * 2, **kwargs
        ).execute(context={})
    with pytest.raises(ValueError, match="long_term_path without long_term_endpoint"):
        SciCatIngestRawOperator(task_id="r", file_path=on_data832, long_term_path=planned.source_path).execute(
            context={}
        )


def test_a_raw_registration_without_a_long_term_path_reads_the_copy_its_source_folder_names(
    facility, on_data832, local_endpoints, airflow_db
):
    """Entries owed before long_term_path (and the configured beamlines, whose sourceFolder is their NERSC copy):
    a scan gone from its endpoint is read in the folder the record names, when that is readable here."""
    folder, name = on_data832.split("/")[3:5]
    long_term = local_endpoints["nersc832"].posix_path(f"raw/{folder}/{name}")
    long_term.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(local_endpoints["data832_raw"].posix_path(f"{folder}/{name}"), long_term)
    raw_folder = local_endpoints["nersc832"].globus_path(f"raw/{folder}")
    out = SciCatIngestRawOperator(task_id="r", file_path=on_data832, source_folder=raw_folder).execute(context={})
    stored = SciCatHook().get_dataset(out["pid"])
    assert stored["sourceFolder"] == raw_folder and stored["size"] == long_term.stat().st_size
    with pytest.raises(FileNotFoundError, match=r"not on data832_raw .*nor in /global/cfs/.*; nothing catalogued"):
        SciCatIngestRawOperator(task_id="r", file_path=f"{folder}/other.h5", source_folder=raw_folder).execute(
            context={}
        )
