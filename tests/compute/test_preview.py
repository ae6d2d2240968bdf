"""compute_functions.preview: xy | xz | yz PNG from a TIFF folder or an OME-Zarr, auto-contrast."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from compute_functions.multiscale import write_multiscale
from compute_functions.preview import GAP, PreviewError, central_planes, contrast_limits, main, write_preview

SHAPE = (40, 48, 56)  # z, y, x: all different, so a transposed panel would show


@pytest.fixture
def stack(tmp_path):
    """Noise around 0.2 with a bright box through the centre; an exact-zero mask ring like a reconstruction."""
    rng = np.random.default_rng(3)
    vol = rng.normal(0.2, 0.02, size=SHAPE).astype(np.float32)
    vol[16:24, 20:28, 24:32] = 1.0
    vol[:, :2, :] = 0.0
    folder = tmp_path / "recsample"
    folder.mkdir()
    for z, plane in enumerate(vol):
        tifffile.imwrite(folder / f"sample_{z:05d}.tiff", plane)
    return folder, vol


def load(png) -> np.ndarray:
    with Image.open(png) as image:
        assert image.format == "PNG" and image.mode == "L"
        return np.asarray(image)


def check_layout(image: np.ndarray, z: int, y: int, x: int) -> None:
    """Panels xy (y by x), xz (z by x), yz (z by y) side by side, each showing the bright box at its centre."""
    assert image.dtype == np.uint8
    assert image.shape == (max(y, z), x + x + y + 2 * GAP)
    xy = image[:y, :x]
    xz = image[:z, x + GAP : 2 * x + GAP]
    yz = image[:z, 2 * x + 2 * GAP :]
    for panel, (r, c) in ((xy, (y // 2, x // 2)), (xz, (z // 2, x // 2)), (yz, (z // 2, y // 2))):
        assert panel[r, c] == 255  # the bright box through the centre
        assert 0 < np.median(panel) < 128  # the noise is mid-dark, not clipped away
    assert not image[:, x : x + GAP].any()  # the gaps are black


def test_preview_from_tiff_folder(tmp_path, stack):
    folder, _ = stack
    png = write_preview(folder, tmp_path / "out" / "preview.png")
    assert png == tmp_path / "out" / "preview.png"
    check_layout(load(png), *SHAPE)
    assert [p.name for p in png.parent.iterdir()] == ["preview.png"]


def test_preview_from_zarr_uses_lower_level_for_big_volumes(tmp_path, stack):
    folder, vol = stack
    summary = write_multiscale(folder, chunk=(8, 16, 16), levels=2)
    full = write_preview(summary["zarr"], tmp_path / "full.png")
    check_layout(load(full), *SHAPE)
    small = write_preview(summary["zarr"], tmp_path / "small.png", max_size=30)
    check_layout(load(small), *(n // 2 for n in SHAPE))
    xy, xz, yz = central_planes(summary["zarr"])
    assert np.array_equal(xy, vol[20]) and np.array_equal(xz, vol[:, 24]) and np.array_equal(yz, vol[:, :, 28])


def test_tiff_folder_is_subsampled_to_max_size(tmp_path, stack):
    folder, vol = stack
    xy, xz, yz = central_planes(folder, max_size=20)  # step 3
    assert np.array_equal(xy, vol[20, ::3, ::3])
    assert np.array_equal(xz, vol[::3, 24, ::3])
    assert np.array_equal(yz, vol[::3, ::3, 28])


def test_contrast_ignores_mask_zeros_and_nans():
    plane = np.zeros((10, 10), dtype=np.float32)
    plane[5:, :] = np.linspace(1.0, 2.0, 50).reshape(5, 10)
    plane[0, 0] = np.nan
    lo, hi = contrast_limits([plane], (0, 100))
    assert (lo, hi) == pytest.approx((1.0, 2.0))
    assert contrast_limits([np.full((3, 3), 5.0)]) == (5.0, 6.0)


def test_bad_source_is_one_line_error(tmp_path, capsys):
    with pytest.raises(PreviewError, match="no such folder"):
        write_preview(tmp_path / "missing", tmp_path / "p.png")
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), str(tmp_path / "p.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no TIFF files" in err[0]
    assert not (tmp_path / "p.png").exists()
