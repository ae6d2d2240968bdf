"""The synthetic scan generator: full SPEC §4 layout, deterministic, physically sensible counts."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from compute_functions.sample_scan import geometry, ground_truth, line_integrals, main, write_sample_scan

SPEC_PATHS = [
    "exchange/data",
    "exchange/data_white",
    "exchange/data_dark",
    "exchange/theta",
    "measurement/instrument/instrument_name",
    "measurement/sample/experiment/pi",
    "measurement/sample/experiment/proposal",
    "measurement/sample/experiment/beamline",
    "measurement/sample/experimenter/email",
    "measurement/sample/file_name",
    "measurement/instrument/detector/dimension_x",
    "measurement/instrument/detector/dimension_y",
    "measurement/instrument/detector/pixel_size",
    "measurement/instrument/monochromator/energy",
    "measurement/instrument/camera_motor_stack/setup/camera_distance",
    "process/acquisition/rotation/rotation_start",
    "process/acquisition/rotation/rotation_step",
    "process/acquisition/rotation/num_angles",
    "process/acquisition/rotation/range",
    "process/acquisition/flat_fields/num_flat_fields",
    "process/acquisition/dark_fields/num_dark_fields",
]


def test_full_layout(tmp_path):
    path = write_sample_scan(tmp_path / "20240101_120000_layout.h5", size="tiny")
    with h5py.File(path) as f:
        missing = [p for p in SPEC_PATHS if p not in f]
        assert not missing
        assert f["exchange/data"].shape == (121, 4, 128) and f["exchange/data"].dtype == np.uint16
        assert f["measurement/sample/experiment/pi"][0] == b"Dula Parkinson"
        assert f["measurement/sample/file_name"][0] == b"20240101_120000_layout"
        assert f["measurement/instrument/source/current"].shape == (121,)  # a per-frame array
        data, flat = f["exchange/data"][:], f["exchange/data_white"][:]
    assert 0 < data.min() < data.max() < 65535 and flat.mean() > data.mean()


def test_deterministic_seed(tmp_path):
    a = write_sample_scan(tmp_path / "a.h5", size=(12, 2, 32), seed=3)
    b = write_sample_scan(tmp_path / "b.h5", size=(12, 2, 32), seed=3)
    c = write_sample_scan(tmp_path / "c.h5", size=(12, 2, 32), seed=4)
    with h5py.File(a) as fa, h5py.File(b) as fb, h5py.File(c) as fc:
        assert np.array_equal(fa["exchange/data"][:], fb["exchange/data"][:])
        assert not np.array_equal(fa["exchange/data"][:], fc["exchange/data"][:])


def test_noise_free_projections_follow_beer_lambert(tmp_path):
    path = write_sample_scan(tmp_path / "nf.h5", size=(30, 2, 64), noise=False, rings=False)
    geom = geometry((30, 2, 64))
    with h5py.File(path) as f:
        data = f["exchange/data"][:, 1].astype(float)
        flat, dark = f["exchange/data_white"][:, 1].mean(0), f["exchange/data_dark"][:, 1].mean(0)
    measured = -np.log((data - dark) / (flat - dark))
    np.testing.assert_allclose(measured, line_integrals(geom, 1), atol=2e-3)


def test_truth_and_axis():
    geom = geometry("tiny")
    assert geom.center == pytest.approx(64 + 0.0125 * 128 + 0.3)
    truth = ground_truth(geom, rows=[0])
    assert truth.shape == (1, 128, 128) and truth.max() > 0
    # The most absorbing ray of the truth matches the stated maximum line integral.
    assert truth[0].sum(axis=0).max() * geom.pixel_size_mm / 10 == pytest.approx(2.0, rel=0.05)


def test_bad_size():
    with pytest.raises(ValueError, match="unknown size"):
        geometry("huge")


def test_cli(tmp_path, capsys):
    out = tmp_path / "20240101_120000_cli.h5"
    assert main([str(out), "--size", "tiny", "--seed", "2"]) == 0
    assert capsys.readouterr().out.strip() == str(out) and out.exists()
    assert not list(tmp_path.glob(".*partial"))
