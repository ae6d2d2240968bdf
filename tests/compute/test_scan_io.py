"""The Data Exchange reader: tooth.h5 as it is, the /process/acquisition fallbacks, clear errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from compute_functions.sample_scan import write_sample_scan
from compute_functions.scan_io import ScanError, open_scan, read_metadata

TOOTH = Path("/work/shared/data/tooth.h5")


@pytest.mark.skipif(not TOOTH.exists(), reason="tooth.h5 not available")
def test_reads_tooth_as_it_is():
    meta = read_metadata(TOOTH)
    assert (meta.dataset, meta.shape) == ("tooth", (181, 2, 640))
    np.testing.assert_allclose(meta.theta_deg, np.arange(181) * 180 / 181)  # [0, 180) in 181 steps
    assert not meta.is_360
    assert meta.pixel_size_mm is None and meta.pixel_size_um is None
    with open_scan(TOOTH) as scan:
        slab = scan.read_sinograms(1, 2)
        assert slab.shape == (181, 1, 640) and slab.dtype == np.float32
        assert scan.flats((0, 1)).shape == (10, 1, 640)
        assert scan.darks().shape == (10, 2, 640)


def test_full_layout_metadata(tmp_path):
    path = write_sample_scan(tmp_path / "20240101_120000_meta.h5", size="tiny")
    meta = read_metadata(path)
    assert meta.dataset == "20240101_120000_meta"
    assert meta.pixel_size_mm == pytest.approx(0.00325) and meta.pixel_size_um == pytest.approx(3.25)
    assert meta.energy_ev == 25000.0 and meta.camera_distance == 50.0
    assert meta.instrument_name == "8.3.2 micro-tomography" and meta.sample_file_name == meta.dataset
    assert meta.theta_source == "/exchange/theta" and meta.flat_source == "/exchange/data_white"


def test_fallbacks_under_process_acquisition(tmp_path):
    path = write_sample_scan(tmp_path / "20240101_120000_fb.h5", size=(40, 3, 32), fallback_layout=True)
    meta = read_metadata(path)
    assert meta.theta_source == "/process/acquisition/rotation"
    assert meta.flat_source.endswith("flat_field_value") and meta.dark_source.endswith("dark_field_value")
    np.testing.assert_allclose(meta.theta_deg, np.linspace(0, 180, 40))
    with open_scan(path) as scan:
        assert scan.flats((1, 3)).shape == (10, 2, 32)
    # A scalar flat value and a 360-degree range given only as start/range/num_angles.
    with h5py.File(path, "r+") as f:
        del f["process/acquisition/flat_fields/flat_field_value"]
        f["process/acquisition/flat_fields/flat_field_value"] = np.array([1000.0])
        del f["process/acquisition/rotation/rotation_step"]
        f["process/acquisition/rotation/range"][...] = 360.0
    meta = read_metadata(path)
    assert meta.is_360 and meta.theta_deg[1] == pytest.approx(9.0)
    with open_scan(path) as scan:
        flats = scan.flats((0, 2))
        assert flats.shape == (1, 2, 32) and np.all(flats == 1000.0)


def test_missing_darks_are_zero_and_missing_flats_fail(tmp_path):
    path = write_sample_scan(tmp_path / "20240101_120000_nf.h5", size=(20, 2, 32))
    with h5py.File(path, "r+") as f:
        del f["exchange/data_dark"], f["exchange/data_white"], f["exchange/theta"], f["process/acquisition/rotation"]
    meta = read_metadata(path)
    assert meta.theta_source == "default" and len(meta.theta_deg) == 20
    with open_scan(path) as scan:
        assert not scan.darks().any()
        with pytest.raises(ScanError, match="no flat fields"):
            scan.flats()


def test_per_frame_values_and_bytes(tmp_path):
    path = tmp_path / "20240101_120000_pf.h5"
    with h5py.File(path, "w") as f:
        f["exchange/data"] = np.ones((5, 2, 16), np.uint16)
        f["measurement/instrument/monochromator/energy"] = np.full(5, 20000.0)  # one value per frame
        f["measurement/instrument/instrument_name"] = np.bytes_(b"bl832")  # scalar bytes
        f["measurement/instrument/detector/pixel_size"] = np.array([b"0.00065"])  # number stored as bytes
    meta = read_metadata(path)
    assert meta.energy_ev == 20000.0 and meta.instrument_name == "bl832"
    assert meta.pixel_size_mm == pytest.approx(0.00065)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"not an hdf5 file", "not an HDF5"), (None, "no /exchange/data"), ("2d", "expected \\[angle")],
)
def test_errors(tmp_path, content, message):
    path = tmp_path / "bad.h5"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        with h5py.File(path, "w") as f:
            f["exchange/theta"] = np.zeros(3)
            if content == "2d":
                f["exchange/data"] = np.zeros((3, 4))
    with pytest.raises(ScanError, match=message):
        read_metadata(path)
    with pytest.raises(ScanError), open_scan(tmp_path / "absent.h5"):
        pass


def test_bad_row_range(tmp_path):
    path = write_sample_scan(tmp_path / "20240101_120000_rr.h5", size=(10, 4, 32))
    with open_scan(path) as scan, pytest.raises(ScanError, match="bad row range"):
        scan.read_sinograms(3, 2)
