"""Golden-file tests of the SciCat documents (docs/scicat.md): 8.3.2 raw and derived, 7.3.3 raw.

Each test builds the documents from a realistic input (a synthetic 8.3.2 scan completed with every key the
upstream ``als_832_dx_4`` ingester reads; a synthetic 7.3.3 ``.txt``/``.edf`` exposure), normalises what
changes from run to run (the derived creationTime, the HDF5 file's size, the scan's wall-clock time stamps)
and compares with tests/golden/scicat/<name>.json.

Regenerate after an intended mapping change, then review the diff of the JSON files:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/include/test_scicat_golden.py

(the tests then write the files and pass; without the variable a missing or different file fails).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from compute_functions.sample_scan import write_sample_scan
from facility.scicat_samples import add_832_metadata, write_saxs_exposure
from include import scicat_733, scicat_metadata
from include.endpoints import load_endpoints
from include.paths import parse_scan
from include.plans import new_file_plan, site_plan
from include.sites import load_sites

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "scicat"
MTIME = 1_677_245_153  # 2023-02-24T13:25:53Z
SCAN = parse_scan("/global/raw/BLS-00564_dyparkinson/20230224_132553_sea_shell.h5")
RAW_FOLDER = "/global/raw/BLS-00564_dyparkinson"  # upstream's sourceFolder (test_scicat_upstream_parity.py)
RAW_PID = "20.500.12269/00000000-0000-4000-8000-000000000832"
TIME_STAMP = "/measurement/instrument/time_stamp"


def normalised(docs: Any, *, volatile_sizes: bool) -> dict[str, Any]:
    out = {
        "dataset": json.loads(json.dumps(docs.dataset)),
        "datablock": json.loads(json.dumps(docs.datablock)),
        "thumbnail": bool(docs.thumbnail),
        "warnings": docs.warnings,
    }
    dataset = out["dataset"]
    if dataset["type"] == "derived":
        dataset["creationTime"] = "<now>"
    samples = dataset["scientificMetadata"].get("data_sample", {})
    if TIME_STAMP in samples:  # wall-clock time of the synthetic scan's frames
        samples[TIME_STAMP] = f"<{len(samples[TIME_STAMP])} time stamps>"
    if volatile_sizes and out["datablock"]:  # HDF5 file sizes depend on the h5py/HDF5 version
        out["datablock"]["size"] = "<size>"
        for entry in out["datablock"]["dataFileList"]:
            entry["size"] = "<size>"
    return out


def check_golden(name: str, got: dict[str, Any]) -> None:
    path = GOLDEN / f"{name}.json"
    text = json.dumps(got, indent=2, sort_keys=True, allow_nan=False) + "\n"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.is_file(), f"no golden file {path}; run with UPDATE_GOLDEN=1 to create it"
    assert json.loads(text) == json.loads(path.read_text()), f"{name} differs from {path} (UPDATE_GOLDEN=1 to accept)"


@pytest.fixture(scope="module")
def scan_832(tmp_path_factory) -> Path:
    path = write_sample_scan(tmp_path_factory.mktemp("bl832") / SCAN.file_name, size="tiny")
    add_832_metadata(path)
    os.utime(path, (MTIME, MTIME))
    return path


def test_golden_832_raw(scan_832):
    docs = scicat_metadata.build_raw(scan_832, RAW_FOLDER)
    check_golden("bl832_raw", normalised(docs, volatile_sizes=True))


def test_golden_832_derived(scan_832, tmp_path):
    raw = {**scicat_metadata.build_raw(scan_832, RAW_FOLDER).dataset, "pid": RAW_PID}
    results = tmp_path / "nersc"
    (results / f"rec{SCAN.dataset}").mkdir(parents=True)
    tiff = results / f"rec{SCAN.dataset}" / f"{SCAN.dataset}_00000.tiff"
    tiff.write_bytes(b"\0" * 64)
    (results / f"rec{SCAN.dataset}.zarr").mkdir()
    (results / f"rec{SCAN.dataset}.zarr" / "zarr.json").write_text("{}")
    for item in (tiff, results / f"rec{SCAN.dataset}.zarr" / "zarr.json"):
        os.utime(item, (MTIME, MTIME))
    archive = "/global/cfs/cdirs/als/data_mover/8.3.2/scratch/BLS-00564_dyparkinson/nersc"
    docs = scicat_metadata.build_derived(
        raw,
        dataset_name=f"rec{SCAN.dataset}_nersc",
        source_folder=archive,
        tiff_location=f"{archive}/rec{SCAN.dataset}",
        zarr_location=f"{archive}/rec{SCAN.dataset}.zarr",
        parameters={"engine": "gridrec", "center": 63.5, "ring_removal": True},
        site="nersc",
        local_folder=results,
    )
    check_golden("bl832_derived", normalised(docs, volatile_sizes=False))


def test_golden_733_raw(tmp_path):
    folder = tmp_path / "ALS-07330_saxs"
    txt, _ = write_saxs_exposure(folder, "texas_B19_2_3_2m_00001", mtime=MTIME)
    docs = scicat_733.build_raw(txt, "/global/cfs/cdirs/als/data_mover/7.3.3/raw/ALS-07330_saxs")
    check_golden("bl733_raw", normalised(docs, volatile_sizes=False))


# -- one test per difference of finding 2 (each fails on the old mapping) ------------------------------


def golden(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / f"{name}.json").read_text())["dataset"]


def test_golden_raw_has_upstream_access_groups_sample_id_and_name():
    raw = golden("bl832_raw")
    assert raw["accessGroups"] == ["8.3.2"]  # the scan says "bl832"
    assert raw["sampleId"] == raw["description"] == "20230224 132553 sea shell"
    assert raw["datasetName"] == "20230224_132553_sea_shell"  # /measurement/sample/file_name
    assert "/measurement/instrument/detector/pixel_size" in raw["scientificMetadata"]
    assert "/measurement/instrument/source/current" in raw["scientificMetadata"]["data_sample"]


def test_plans_name_upstreams_raw_folder_and_the_results_long_term_copies_as_source_folders():
    """sourceFolder: the scan's folder as spot832 names it (upstream's, beamlines.yaml source_folder_root), which
    the derived ingest looks its raw dataset up by; the results' archive copy. Without a source_folder_root, the
    scan's nersc832 copy (data832 raw is pruned after days)."""
    from dataclasses import replace

    from include.beamlines import default_tomography
    from include.plans import raw_source_folder

    endpoints = load_endpoints()
    planned = new_file_plan(SCAN, offsite=True)
    assert planned.scicat_source_folder == RAW_FOLDER
    assert planned.source_path == "raw/BLS-00564_dyparkinson/20230224_132553_sea_shell.h5"  # the long-term copy
    unrooted = replace(default_tomography(), source_folder_root=None)
    assert raw_source_folder(unrooted, SCAN) == endpoints["nersc832"].globus_path("raw/BLS-00564_dyparkinson")
    sites = load_sites()
    nersc = site_plan(sites["nersc"], SCAN, {})
    assert nersc.scicat_raw_source_folder == planned.scicat_source_folder
    assert nersc.scicat_source_folder == endpoints["nersc832_alsdev_scratch"].globus_path(nersc.results_folder)
    alcf = site_plan(sites["alcf"], SCAN, {"engine": "nufft"})  # no archive copy: data832_scratch keeps them
    assert alcf.scicat_source_folder == endpoints["data832_scratch"].globus_path(alcf.results_folder)


def test_golden_derived_links_its_raw_dataset():
    derived = golden("bl832_derived")
    assert derived["inputDatasets"] == [RAW_PID]
    assert derived["scientificMetadata"]["raw_dataset"] == {
        "pid": RAW_PID,
        "datasetName": "20230224_132553_sea_shell",
        "sourceFolder": RAW_FOLDER,
        "proposalId": "ALS-11234",
    }
    assert derived["accessGroups"] == ["8.3.2"] and derived["ownerGroup"] == "ALS-11234"


def test_bl733_is_configured_with_its_saxs_mapping_and_typos_are_refused(tmp_path):
    """Finding 8 (SciCat half): beamlines.yaml picks 7.3.3's own mapping; an unknown ingester is a config error."""
    import yaml

    from include.beamlines import BEAMLINES_FILE, load_beamlines, parse_beamlines
    from include.errors import ConfigError

    beamlines = load_beamlines()
    assert beamlines["bl733"].pipeline("scicat") == {"ingester": "als_733_saxs"}
    document = yaml.safe_load(BEAMLINES_FILE.read_text())
    document["beamlines"]["bl733"]["pipelines"]["scicat"] = {"ingester": "als733_saxs"}  # upstream's spelling
    names = set(load_endpoints().endpoints)
    parsed = parse_beamlines(document, source=BEAMLINES_FILE, endpoint_names=names)
    assert parsed["bl733"].pipeline("scicat")["ingester"] == "als_733_saxs"
    document["beamlines"]["bl733"]["pipelines"]["scicat"] = {"ingester": "als_733_waxs"}
    with pytest.raises(
        ConfigError, match=r"bl733\.pipelines\.scicat\.ingester: unknown SciCat ingester 'als_733_waxs'"
    ):
        parse_beamlines(document, source=BEAMLINES_FILE, endpoint_names=names)
