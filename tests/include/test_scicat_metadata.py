"""SciCat documents built from scans (SPEC §4 mapping) and reconstructions."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from compute_functions.sample_scan import write_sample_scan
from facility.scicat_samples import add_832_metadata
from include import scicat_metadata as sm

TOOTH = Path("/work/shared/data/tooth.h5")


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> Path:
    """A synthetic 8.3.2 scan with every key the upstream ingester reads (beamline ``bl832``)."""
    path = write_sample_scan(tmp_path_factory.mktemp("scan") / "20230224_132553_sea_shell.h5", size="tiny")
    add_832_metadata(path)
    os.utime(path, (1_677_245_153, 1_677_245_153))
    return path


def png_of(data_url: str) -> Image.Image:
    assert data_url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


def copy_with(scan: Path, tmp_path: Path, name: str | None = None, **values: str) -> Path:
    """A copy of ``scan`` with some string keys (given as ``PI="..."`` etc. by their constant names) replaced."""
    path = Path(shutil.copy(scan, tmp_path / (name or scan.name)))
    with h5py.File(path, "a") as f:
        for const, value in values.items():
            key = getattr(sm, const)
            del f[key]
            f[key] = np.array([value.encode()])
    return path


def test_raw_mapping_of_a_full_scan(scan):
    docs = sm.build_raw(scan, "/global/raw/BLS-00564_dyparkinson")
    d = docs.dataset
    assert docs.warnings == []
    assert d["type"] == "raw" and d["dataFormat"] == "DX"
    assert d["datasetName"] == "20230224_132553_sea_shell"
    assert d["creationLocation"] == d["instrumentId"] == "8.3.2 micro-tomography"
    assert d["owner"] == d["principalInvestigator"] == "Dula Parkinson"
    assert d["proposalId"] == d["ownerGroup"] == "ALS-11234"
    assert d["accessGroups"] == ["8.3.2"]  # bl832 → 8.3.2, which is also the staff group
    assert d["contactEmail"] == "DYParkinson@lbl.gov"
    assert d["keywords"] == ["20230224", "132553", "sea", "shell"]
    assert d["description"] == d["sampleId"] == "20230224 132553 sea shell"
    assert d["sourceFolder"] == "/global/raw/BLS-00564_dyparkinson"
    assert "size" not in d and "numberOfFiles" not in d  # SciCat adds the datablock's (issue 17)
    assert docs.datablock["size"] == scan.stat().st_size
    assert d["creationTime"] == "2023-02-24T13:25:53Z"  # upstream's form, in UTC
    json.dumps(d, allow_nan=False)  # JSON-clean, no NaN


def test_scientific_metadata_is_keyed_by_full_hdf5_paths(scan):
    """Finding 2: upstream keys scientificMetadata by the full HDF5 path (SciCat saved searches use them)."""
    sci = sm.build_raw(scan, "/x").dataset["scientificMetadata"]
    assert set(sci) == {*sm.SCIENTIFIC_KEYS, "data_sample"}
    assert sci["/measurement/instrument/detector/pixel_size"] == pytest.approx(0.00325)
    assert sci["/measurement/instrument/detector/model"] == "PCO.edge 5.5"
    assert sci["/measurement/instrument/detection_system/scintillator/scintillator_type"] == "LuAG:Ce 50um"
    assert sci["/process/acquisition/rotation/num_angles"] == 121
    assert sci["/process/acquisition/flat_fields/num_flat_fields"] == 10
    assert sci["/measurement/instrument/source/source_name"] == "Advanced Light Source"


def test_data_sample_takes_every_tenth_of_each_per_frame_array(scan):
    samples = sm.build_raw(scan, "/x").dataset["scientificMetadata"]["data_sample"]
    assert set(samples) == set(sm.DATA_SAMPLE_KEYS)
    with h5py.File(scan) as f:
        current = f["/measurement/instrument/source/current"][()]
    assert samples["/measurement/instrument/source/current"] == pytest.approx(current[::12].tolist())
    assert len(samples["/measurement/instrument/source/current"]) == 11  # 121 frames, step 121 // 10
    assert samples["/measurement/instrument/monochromator/energy"] == [25000.0]  # one value: step 1


def test_datablock_and_thumbnail(scan):
    docs = sm.build_raw(scan, "/global/raw/f")
    assert docs.datablock["dataFileList"] == [  # the absolute path, as upstream
        {"path": f"/global/raw/f/{scan.name}", "size": scan.stat().st_size, "time": "2023-02-24T13:25:53Z"}
    ]
    assert docs.caption == "raw image"
    image = png_of(docs.thumbnail)
    assert image.mode == "L" and image.size[0] == 128
    pixels = np.asarray(image)
    assert pixels.min() == 0 and pixels.max() == 255  # auto-contrast uses the full range


def test_thumbnail_is_log_scaled_auto_contrast():
    ramp = np.tile(np.logspace(0, 4, 256), (64, 1))  # exponential ramp: linear after log
    pixels = np.asarray(Image.open(io.BytesIO(sm.thumbnail_png(ramp)))).astype(float)[0]
    assert pixels[0] == 0 and pixels[-1] == 255
    assert abs(pixels[128] - 127.5) < 6  # midpoint of the log range, not of the linear one
    with pytest.raises(ValueError):
        sm.thumbnail_png(np.zeros(5))


def test_projection_thumbnail_is_upstreams_log_scale():
    """8.3.2 (upstream build_thumbnail_as_filebuffer): log(x - min + 1.001), then autocontrast to 0..255."""
    ramp = np.tile(np.logspace(0, 4, 256), (64, 1))
    pixels = np.asarray(Image.open(io.BytesIO(sm.projection_png(ramp)))).astype(float)[0]
    assert pixels[0] == 0 and pixels[-1] == 255
    assert abs(pixels[128] - 127.5) < 8  # the log range's midpoint
    with pytest.raises(ValueError):
        sm.projection_png(np.zeros(5))


def test_tooth_missing_optional_keys_are_warnings_with_fallbacks():
    docs = sm.build_raw(TOOTH, "/data/raw/aps")
    d = docs.dataset
    text = "\n".join(docs.warnings)
    for key in (*sm.SCICAT_KEYS, *sm.SCIENTIFIC_KEYS):
        assert key in text and "optional key(s) missing" in text
    assert "datasetName is the file stem 'tooth'" in text
    assert d["datasetName"] == "tooth" and d["ownerGroup"] == "8.3.2" and d["accessGroups"] == []
    assert d["owner"] == d["creationLocation"] == "Unknown" and d["contactEmail"] == sm.DEFAULT_CONTACT_EMAIL
    assert "proposalId" not in d
    assert d["scientificMetadata"] == {"data_sample": {}}
    assert png_of(docs.thumbnail).size[1] >= 32  # a 2-row detector still gives a visible thumbnail


@pytest.mark.parametrize(
    ("beamline", "proposal", "owner_group", "access_groups"),
    [
        ("bl832", "ALS-11234", "ALS-11234", ["8.3.2"]),
        (" 'BL832', ", "ALS-11234", "ALS-11234", ["8.3.2"]),
        ("8.3.2", None, "8.3.2", ["8.3.2"]),
        ('"ALS-Staff"', "None", "8.3.2", ["als-staff", "8.3.2"]),
        (None, "P-1", "P-1", []),
    ],
)
def test_access_controls_follow_upstream(beamline, proposal, owner_group, access_groups):
    assert sm.access_controls("8.3.2", beamline, proposal) == (owner_group, access_groups)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (b"dyparkinson@lbl.gov", "dyparkinson@lbl.gov"),
        (" 'a.b@lbl.gov', ", "a.b@lbl.gov"),
        ("mailto:x@y.org; z@w.org", "x@y.org"),
        ("None", None),
        ("dula parkinson", None),
        ("a@b", None),
        (None, None),
    ],
)
def test_clean_email(raw, clean):
    assert sm.clean_email(raw) == clean


def test_bad_email_is_a_warning_and_a_fallback(scan, tmp_path):
    path = shutil.copy(scan, tmp_path / scan.name)
    with h5py.File(path, "a") as f:
        del f[sm.EMAIL]
        f[sm.EMAIL] = np.array([b"None"])
    docs = sm.build_raw(path, "/x", fallback_email="beamline@example.org")
    assert docs.dataset["contactEmail"] == "beamline@example.org"
    assert [w for w in docs.warnings if "is not an email" in w and "'None'" in w]


def test_access_groups_from_the_beamline_string(scan, tmp_path):
    """Finding 2: the beamline string is lower-cased, unquoted, bl832 → 8.3.2, plus the staff group."""
    quoted = sm.build_raw(copy_with(scan, tmp_path, BEAMLINE=" 'BL832' "), "/x").dataset
    assert quoted["accessGroups"] == ["8.3.2"]
    other = sm.build_raw(copy_with(scan, tmp_path, "o.h5", BEAMLINE="ALS-Staff"), "/x").dataset
    assert other["accessGroups"] == ["als-staff", "8.3.2"]


def test_sample_id_is_the_search_terms_of_the_file_name(scan):
    """Finding 2: upstream sets sampleId (the file name's search terms)."""
    assert sm.build_raw(scan, "/x").dataset["sampleId"] == "20230224 132553 sea shell"


def test_dataset_name_is_the_file_name_recorded_in_the_scan(scan, tmp_path):
    """Finding 2: datasetName is /measurement/sample/file_name, not the file's stem."""
    path = copy_with(scan, tmp_path, "renamed_on_disk.h5", FILE_NAME="20230224_132553_sea_shell")
    d = sm.build_raw(path, "/x").dataset
    assert d["datasetName"] == "20230224_132553_sea_shell"
    assert sm.raw_dataset_name(path) == "20230224_132553_sea_shell"
    assert [f["path"] for f in sm.build_raw(path, "/x").datablock["dataFileList"]] == ["/x/renamed_on_disk.h5"]


def test_proposal_none_gives_the_default_owner_group(scan, tmp_path):
    """Finding 2: a proposal of "None" is no proposal: ownerGroup 8.3.2 (upstream DEFAULT_USER), no proposalId."""
    d = sm.build_raw(copy_with(scan, tmp_path, PROPOSAL="None"), "/x").dataset
    assert d["ownerGroup"] == "8.3.2" and "proposalId" not in d


def test_not_hdf5_raises(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(OSError):
        sm.build_raw(bad, "/x")


def derived_of(raw, folder: str, name: str, dataset_name: str, parameters, site: str, preview, local_folder):
    """sm.build_derived for results at ``folder``: TIFFs in ``folder/name``, the Zarr store ``folder/name.zarr``."""
    return sm.build_derived(
        raw,
        dataset_name=dataset_name,
        source_folder=folder,
        tiff_location=f"{folder}/{name}",
        zarr_location=f"{folder}/{name}.zarr",
        parameters=parameters,
        site=site,
        preview_path=preview,
        local_folder=local_folder,
    )


def test_derived_documents(tmp_path):
    results = tmp_path / "alcf"
    (results / "recscan").mkdir(parents=True)
    (results / "recscan" / "scan_00000.tiff").write_bytes(b"t" * 10)
    (results / "recscan.zarr" / "0").mkdir(parents=True)
    (results / "recscan.zarr" / "zarr.json").write_bytes(b"{}")
    preview = tmp_path / "preview.png"
    preview.write_bytes(sm.thumbnail_png(np.arange(64.0 * 64).reshape(64, 64) + 1))
    raw = {
        "pid": "20.500.1/raw",
        "datasetName": "scan",
        "owner": "PI",
        "principalInvestigator": "PI",
        "contactEmail": "pi@lbl.gov",
        "ownerGroup": "ALS-1",
        "accessGroups": ["8.3.2"],
        "proposalId": "ALS-1",
        "sourceFolder": "/global/cfs/cdirs/als/data_mover/8.3.2/raw/f",
    }
    params = {"engine": "gridrec", "center": np.float32(63.5), "rows": np.arange(2), "bad": float("nan")}
    docs = derived_of(
        raw, "/data/scratch/globus_share/alcf", "recscan", "recscan_alcf", params, "alcf", preview, results
    )
    d = docs.dataset
    assert d["type"] == "derived" and d["inputDatasets"] == ["20.500.1/raw"]
    assert d["scientificMetadata"]["raw_dataset"] == {
        "pid": "20.500.1/raw",
        "datasetName": "scan",
        "sourceFolder": "/global/cfs/cdirs/als/data_mover/8.3.2/raw/f",
        "proposalId": "ALS-1",
    }
    assert d["investigator"] == "PI" and d["ownerGroup"] == "ALS-1" and d["usedSoftware"] == ["gridrec"]
    assert d["jobParameters"] == {"engine": "gridrec", "center": 63.5, "rows": [0, 1], "bad": None}
    assert d["scientificMetadata"]["site"] == "alcf"
    assert d["scientificMetadata"]["tiff"]["location"].endswith("/alcf/recscan")
    assert d["scientificMetadata"]["zarr"]["location"].endswith("/alcf/recscan.zarr")
    assert [f["path"] for f in docs.datablock["dataFileList"]] == ["recscan/scan_00000.tiff", "recscan.zarr/zarr.json"]
    assert docs.datablock["size"] == 12 and "size" not in d and "numberOfFiles" not in d
    assert png_of(docs.thumbnail).size == (64, 64)
    json.dumps(d, allow_nan=False)


def test_derived_without_files_or_preview_warns(tmp_path):
    raw = {"pid": "p", "ownerGroup": "g"}
    not_png = tmp_path / "p.png"
    not_png.write_text("x")
    docs = derived_of(raw, "/s", "r", "r", None, "nersc", not_png, tmp_path / "empty")
    assert docs.datablock is None and docs.thumbnail is None
    assert len(docs.warnings) == 3
