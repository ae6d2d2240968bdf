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
from include import scicat_metadata as sm

TOOTH = Path("/work/shared/data/tooth.h5")


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> Path:
    path = write_sample_scan(tmp_path_factory.mktemp("scan") / "20230224_132553_sea_shell.h5", size="tiny")
    os.utime(path, (1_677_245_153, 1_677_245_153))
    return path


def png_of(data_url: str) -> Image.Image:
    assert data_url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


def test_raw_mapping_of_a_full_scan(scan):
    docs = sm.build_raw(scan, "/data/raw/BLS-00564_dyparkinson")
    d = docs.dataset
    assert docs.warnings == []
    assert d["type"] == "raw" and d["dataFormat"] == "DX"
    assert d["datasetName"] == "20230224_132553_sea_shell"
    assert d["creationLocation"] == d["instrumentId"] == "8.3.2 micro-tomography"
    assert d["owner"] == d["principalInvestigator"] == "Dula Parkinson"
    assert d["proposalId"] == d["ownerGroup"] == "ALS-11234"
    assert d["accessGroups"] == ["8.3.2"]
    assert d["contactEmail"] == "DYParkinson@lbl.gov"
    assert d["keywords"] == ["20230224", "132553", "sea", "shell"] and d["description"] == "20230224 132553 sea shell"
    assert d["sourceFolder"] == "/data/raw/BLS-00564_dyparkinson"
    assert "size" not in d and "numberOfFiles" not in d  # SciCat adds the datablock's (issue 17)
    assert docs.datablock["size"] == scan.stat().st_size
    assert d["creationTime"] == "2023-02-24T13:25:53+00:00"
    json.dumps(d, allow_nan=False)  # JSON-clean, no NaN


def test_scientific_metadata_settings_and_frame_samples(scan):
    sci = sm.build_raw(scan, "/x").dataset["scientificMetadata"]
    inst, acq = sci["instrument"], sci["acquisition"]
    assert inst["detector"]["pixel_size"] == pytest.approx(0.00325)
    assert inst["detector"]["model"] == "PCO.edge 5.5"
    assert inst["monochromator"]["energy"] == 25000.0
    assert inst["detection_system"]["scintillator"]["scintillator_type"] == "LuAG:Ce 50um"
    assert "horizontal_size" in inst["slits"] and inst["source"]["source_name"] == "Advanced Light Source"
    assert acq["rotation"]["num_angles"] == 121 and acq["flat_fields"]["num_flat_fields"] == 10
    assert acq["dark_fields"]["num_dark_fields"] == 10 and "tile_xmovedist" in acq["mosaic"]
    assert sci["shape"] == [121, 4, 128]
    samples = sci["frame_samples"]
    for key in (
        "measurement/instrument/source/current",
        "measurement/instrument/detector/exposure_time",
        "measurement/instrument/time_stamp",
        "measurement/instrument/sample_motor_stack/setup/sample_x",
    ):
        assert samples[key]["count"] == 121
        assert len(samples[key]["values"]) == 10 and samples[key]["indices"][0] == 0
        assert samples[key]["indices"][-1] == 120
    with h5py.File(scan) as f:
        current = f["/measurement/instrument/source/current"][()]
    idx = samples["measurement/instrument/source/current"]["indices"]
    assert samples["measurement/instrument/source/current"]["values"] == pytest.approx(current[idx].tolist())


def test_datablock_and_thumbnail(scan):
    docs = sm.build_raw(scan, "/data/raw/f")
    assert docs.datablock["dataFileList"] == [
        {"path": scan.name, "size": scan.stat().st_size, "time": "2023-02-24T13:25:53+00:00"}
    ]
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


def test_tooth_missing_optional_keys_are_warnings_with_fallbacks():
    docs = sm.build_raw(TOOTH, "/data/raw/aps")
    d = docs.dataset
    text = "\n".join(docs.warnings)
    for key in (sm.INSTRUMENT_NAME, sm.PI, sm.PROPOSAL, sm.BEAMLINE, sm.EMAIL, sm.FILE_NAME):
        assert key in text
    assert d["datasetName"] == "tooth" and d["ownerGroup"] == "8.3.2" and d["accessGroups"] == ["8.3.2"]
    assert d["owner"] == "unknown" and d["contactEmail"] == sm.DEFAULT_CONTACT_EMAIL
    assert "proposalId" not in d
    assert d["scientificMetadata"]["shape"] == [181, 2, 640]
    assert png_of(docs.thumbnail).size[1] >= 32  # a 2-row detector still gives a visible thumbnail


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


def test_file_name_disagreeing_with_the_file_is_a_warning(scan, tmp_path):
    path = Path(shutil.copy(scan, tmp_path / "20230224_000000_other_x00y01.h5"))
    docs = sm.build_raw(path, "/x")
    assert docs.dataset["datasetName"] == "20230224_000000_other_x00y01"
    assert any("the dataset is named after the file" in w for w in docs.warnings)


def test_not_hdf5_raises(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(OSError):
        sm.build_raw(bad, "/x")


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
    }
    params = {"engine": "gridrec", "center": np.float32(63.5), "rows": np.arange(2), "bad": float("nan")}
    docs = sm.build_derived(
        raw,
        dataset_name="recscan_alcf",
        source_folder="/data/scratch/globus_share/alcf",
        tiff_location="/data/scratch/globus_share/alcf/recscan",
        zarr_location="/data/scratch/globus_share/alcf/recscan.zarr",
        parameters=params,
        site="alcf",
        preview_path=preview,
        local_folder=results,
    )
    d = docs.dataset
    assert d["type"] == "derived" and d["inputDatasets"] == ["20.500.1/raw"]
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
    docs = sm.build_derived(
        raw,
        dataset_name="r",
        source_folder="/s",
        tiff_location="/s/r",
        zarr_location="/s/r.zarr",
        parameters=None,
        site="nersc",
        preview_path=not_png,
        local_folder=tmp_path / "empty",
    )
    assert docs.datablock is None and docs.thumbnail is None
    assert len(docs.warnings) == 3
