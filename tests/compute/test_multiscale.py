"""compute_functions.multiscale: OME-Zarr pyramid from a TIFF stack, streamed, atomic, with a strict CLI."""

from __future__ import annotations

import json
import logging
import re
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Multiscales, Reader

from compute_functions.multiscale import (
    DEFAULT_MEMORY_MB,
    MultiscaleError,
    choose_chunk_depth,
    default_levels,
    downsample_mean,
    main,
    write_multiscale,
)
from compute_functions.tiff_stack import TiffStack
from tests.compute.compute_helpers import last_json, run_python

_original_read_into = TiffStack.read_into


def make_stack(
    parent: Path, vol: np.ndarray, dataset: str = "20230224_132553_sea_shell", pixel_size_um: float | None = 0.65
) -> Path:
    folder = parent / f"rec{dataset}"
    folder.mkdir(parents=True)
    meta = {"pixel_size_um": pixel_size_um} if pixel_size_um is not None else None
    for z, plane in enumerate(vol):
        tifffile.imwrite(folder / f"{dataset}_{z + 7:05d}.tiff", plane, metadata=meta)
    return folder


def make_scan(path: Path, pixel_size_mm: float | None) -> Path:
    with h5py.File(path, "w") as f:
        f["/exchange/data"] = np.zeros((3, 2, 4), dtype=np.uint16)
        f["/exchange/theta"] = np.array([0.0, 90.0, 180.0])
        if pixel_size_mm is not None:
            f["/measurement/instrument/detector/pixel_size"] = np.array([pixel_size_mm])
    return path


def block_mean_reference(a: np.ndarray) -> np.ndarray:
    """Mean of each (up to) 2x2x2 block, computed one block at a time in float64."""
    out = np.empty(tuple((n + 1) // 2 for n in a.shape))
    for i, j, k in np.ndindex(out.shape):
        out[i, j, k] = a[2 * i : 2 * i + 2, 2 * j : 2 * j + 2, 2 * k : 2 * k + 2].astype(np.float64).mean()
    return out


@pytest.fixture
def volume() -> np.ndarray:
    rng = np.random.default_rng(42)
    vol = rng.normal(0.3, 0.1, size=(37, 50, 45)).astype(np.float32)
    return vol


def read_ome(path: Path):
    nodes = list(Reader(parse_url(str(path)))())
    assert nodes, f"ome-zarr found nothing in {path}"
    node = nodes[0]
    assert any(isinstance(spec, Multiscales) for spec in node.specs)
    return node


# ------------------------------------------------------------------------------------------- pyramid contents


@pytest.mark.parametrize("ngff", ["0.4", "0.5"])
def test_pyramid_is_read_by_ome_zarr_with_um_scale_per_level(tmp_path, volume, ngff):
    tiffs = make_stack(tmp_path, volume)
    summary = write_multiscale(tiffs, chunk=(8, 16, 16), ngff=ngff, levels=3)

    out = tmp_path / "rec20230224_132553_sea_shell.zarr"
    assert summary["zarr"] == str(out)
    assert (out / ("0/.zarray" if ngff == "0.4" else "0/zarr.json")).is_file()
    json.dumps(summary)
    node = read_ome(out)
    assert [d.shape for d in node.data] == [(37, 50, 45), (19, 25, 23), (10, 13, 12)]
    assert summary["shapes"] == [[37, 50, 45], [19, 25, 23], [10, 13, 12]]
    assert node.metadata["axes"] == [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    transforms = node.metadata["coordinateTransformations"]
    for level, (scale, translation) in enumerate(transforms):
        assert scale["type"] == "scale"
        assert scale["scale"] == pytest.approx([0.65 * 2**level] * 3)
        assert translation["translation"] == pytest.approx([0.65 * (2**level - 1) / 2] * 3)
    assert summary["pixel_size_um"] == 0.65
    assert summary["pixel_size_source"] == "tiff"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_level0_bit_exact_and_lower_levels_are_block_means(tmp_path, volume):
    volume[0, 0, 0] = np.nan
    volume[1, 2, 3] = -0.0
    volume[2, 3, 4] = np.float32(1e-45)  # denormal
    volume[3, 4, 5] = np.inf
    tiffs = make_stack(tmp_path, volume)
    write_multiscale(tiffs, chunk=(4, 16, 16), levels=3)

    group = zarr.open_group(tmp_path / "rec20230224_132553_sea_shell.zarr", mode="r")
    level0 = group["0"][:]
    assert level0.dtype == np.float32
    assert np.array_equal(level0.view(np.uint32), volume.view(np.uint32))
    level1 = block_mean_reference(volume)
    np.testing.assert_allclose(group["1"][:], level1, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(group["2"][:], block_mean_reference(group["1"][:]), rtol=1e-6, atol=1e-7)


def test_all_zero_chunks_are_skipped_but_negative_zero_is_kept(tmp_path):
    vol = np.zeros((8, 32, 32), dtype=np.float32)
    vol[:, 16:, 16:] = -0.0  # equal to the fill value 0 but not the same bits
    vol[3, 2, 20] = 1.0
    tiffs = make_stack(tmp_path, vol)
    summary = write_multiscale(tiffs, chunk=(8, 16, 16), levels=1)

    level0 = Path(summary["zarr"]) / "0"
    stored = sorted(str(p.relative_to(level0)) for p in level0.rglob("*") if p.is_file() and p.name[0] != ".")
    assert stored == ["0/0/1", "0/1/1"]
    back = zarr.open_group(summary["zarr"], mode="r")["0"][:]
    assert np.array_equal(back.view(np.uint32), vol.view(np.uint32))


def test_big_endian_tiffs_are_stored_native_and_exact(tmp_path, volume):
    folder = tmp_path / "recbe"
    folder.mkdir()
    for z, plane in enumerate(volume[:6]):
        tifffile.imwrite(folder / f"be_{z:05d}.tiff", plane, byteorder=">")
    for ngff in ("0.4", "0.5"):
        summary = write_multiscale(folder, tmp_path / f"be{ngff}.zarr", ngff=ngff, levels=1)
        back = zarr.open_group(summary["zarr"], mode="r")["0"][:]
        assert np.array_equal(back.view(np.uint32), volume[:6].view(np.uint32))


def test_many_levels_deeper_than_one_slab(tmp_path):
    vol = np.arange(40 * 33 * 35, dtype=np.float32).reshape(40, 33, 35)
    tiffs = make_stack(tmp_path, vol)
    summary = write_multiscale(tiffs, chunk=(4, 8, 8), levels=6)

    group = zarr.open_group(summary["zarr"], mode="r")
    expected = vol
    for level in range(6):
        np.testing.assert_allclose(group[str(level)][:], expected, rtol=1e-6)
        expected = block_mean_reference(expected)
    assert group["5"].shape == (2, 2, 2)


def test_default_levels_stop_when_smallest_axis_is_small():
    assert default_levels((37, 50, 45)) == 2
    assert default_levels((256, 256, 256)) == 5  # ... 32 -> 16, not 8
    assert default_levels((2, 640, 640)) == 1
    assert default_levels((2, 640, 640), min_size=1) == 2


def test_downsample_mean_partial_edges_and_integers():
    a = np.arange(3 * 3 * 3, dtype=np.float32).reshape(3, 3, 3)
    np.testing.assert_allclose(downsample_mean(a), block_mean_reference(a), rtol=1e-6)
    b = np.array([[[0, 1], [1, 1]], [[1, 1], [1, 65535]]], dtype=np.uint16)
    out = downsample_mean(b)
    assert out.dtype == np.uint16
    assert out.item() == round(65541 / 8)


# ------------------------------------------------------------------------------------------- scale sources


def test_scale_from_raw_scan_wins_over_tiff_metadata(tmp_path, volume):
    tiffs = make_stack(tmp_path, volume[:4], pixel_size_um=0.65)
    scan = make_scan(tmp_path / "scan.h5", pixel_size_mm=0.00172)
    summary = write_multiscale(tiffs, raw=scan)
    assert summary["pixel_size_source"] == "raw"
    assert summary["pixel_size_um"] == pytest.approx(1.72)
    assert read_ome(summary["zarr"]).metadata["coordinateTransformations"][0][0]["scale"] == pytest.approx([1.72] * 3)


def test_binned_stack_rows_b_apart_scales_the_raw_pixel_size(tmp_path, volume, caplog):
    folder = tmp_path / "recbinned"
    folder.mkdir()
    for i, plane in enumerate(volume[:5]):
        tifffile.imwrite(folder / f"binned_{100 + 2 * i:05d}.tiff", plane, metadata={"pixel_size_um": 3.44})
    scan = make_scan(tmp_path / "scan.h5", pixel_size_mm=0.00172)
    summary = write_multiscale(folder, raw=scan)
    assert summary["pixel_size_um"] == pytest.approx(3.44)
    assert summary["shapes"][0] == [5, 50, 45]
    for i, plane in enumerate(volume[:5]):  # as compute_functions.reconstruct writes them: binning recorded
        meta = {"pixel_size_um": 3.44, "binning": 2}
        tifffile.imwrite(folder / f"binned_{100 + 2 * i:05d}.tiff", plane, metadata=meta)
    (folder / "binned_00104.tiff").unlink()
    with pytest.raises(MultiscaleError, match=re.escape("1 row(s) missing or off the step 2, first 00104")):
        write_multiscale(folder)


def test_scale_argument_wins_then_default_with_warning(tmp_path, volume, caplog):
    tiffs = make_stack(tmp_path, volume[:4], pixel_size_um=None)
    assert write_multiscale(tiffs, pixel_size_um=3.25)["pixel_size_um"] == 3.25
    with caplog.at_level(logging.WARNING, logger="compute_functions.multiscale"):
        summary = write_multiscale(tiffs)
    assert (summary["pixel_size_um"], summary["pixel_size_source"]) == (1.0, "default")
    assert "using 1.0 µm" in caplog.text


def test_raw_without_pixel_size_or_not_hdf5_is_refused(tmp_path, volume):
    tiffs = make_stack(tmp_path, volume[:4])
    with pytest.raises(MultiscaleError, match="no detector pixel size"):
        write_multiscale(tiffs, raw=make_scan(tmp_path / "scan.h5", pixel_size_mm=None))
    bogus = tmp_path / "bogus.h5"
    bogus.write_text("not hdf5")
    with pytest.raises(MultiscaleError, match="not an HDF5 file"):
        write_multiscale(tiffs, raw=bogus)
    assert not (tmp_path / "rec20230224_132553_sea_shell.zarr").exists()


# ------------------------------------------------------------------------------------------- atomicity


def test_rerun_replaces_and_failure_keeps_previous_result(tmp_path, volume, monkeypatch):
    out = tmp_path / "out.zarr"
    first = make_stack(tmp_path / "a", volume)
    write_multiscale(first, out, chunk=(8, 16, 16))
    second = make_stack(tmp_path / "b", volume[:16] + 1)
    write_multiscale(second, out, chunk=(8, 16, 16))
    assert zarr.open_group(out, mode="r")["0"].shape == (16, 50, 45)
    assert np.array_equal(zarr.open_group(out, mode="r")["0"][:], volume[:16] + 1)

    calls = []

    def failing_read(self: TiffStack, start: int, out_buf: np.ndarray) -> int:
        calls.append(start)
        if len(calls) > 2:
            raise OSError("disk on fire")
        return _original_read_into(self, start, out_buf)

    monkeypatch.setattr(TiffStack, "read_into", failing_read)
    with pytest.raises(OSError, match="disk on fire"):
        write_multiscale(first, out, chunk=(8, 16, 16))
    assert len(calls) > 2
    assert np.array_equal(zarr.open_group(out, mode="r")["0"][:], volume[:16] + 1)  # previous result intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "out.zarr"]  # no partial store left

    killed = tmp_path / ".out.zarr.partial-deadbeef"  # as a SIGKILLed run would leave it
    (killed / "0").mkdir(parents=True)
    monkeypatch.setattr(TiffStack, "read_into", _original_read_into)
    write_multiscale(first, out, chunk=(8, 16, 16))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "out.zarr"]
    assert np.array_equal(zarr.open_group(out, mode="r")["0"][:], volume)


def test_corrupt_slice_found_while_streaming_leaves_nothing(tmp_path, volume):
    tiffs = make_stack(tmp_path, volume)
    victim = sorted(tiffs.iterdir())[20]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # header intact, pixel data truncated
    with pytest.raises(MultiscaleError, match=re.escape(victim.name)):
        write_multiscale(tiffs, chunk=(8, 16, 16))
    assert [p.name for p in tmp_path.iterdir()] == [tiffs.name]


# ------------------------------------------------------------------------------------------- memory bound


def test_reads_one_chunk_layer_at_a_time_into_two_buffers(tmp_path, monkeypatch):
    vol = np.zeros((70, 20, 20), dtype=np.float32)
    tiffs = make_stack(tmp_path, vol)
    reads: list[tuple[int, int, int]] = []

    def spy(self: TiffStack, start: int, out: np.ndarray) -> int:
        reads.append((start, len(out), out.__array_interface__["data"][0]))
        return _original_read_into(self, start, out)

    monkeypatch.setattr(TiffStack, "read_into", spy)
    write_multiscale(tiffs, chunk=(8, 16, 16))
    assert [r[0] for r in reads] == list(range(0, 70, 8))
    assert {r[1] for r in reads} == {8}
    assert len({r[2] for r in reads}) == 2


def test_chunk_depth_shrinks_for_huge_slices():
    slice_2560 = 2560 * 2560 * 4
    assert choose_chunk_depth(32, slice_2560, memory_mb=DEFAULT_MEMORY_MB) == 8
    assert choose_chunk_depth(32, slice_2560, memory_mb=512) == 4
    assert choose_chunk_depth(32, slice_2560, memory_mb=2048) == 16
    assert choose_chunk_depth(32, 1024 * 1024 * 4, memory_mb=DEFAULT_MEMORY_MB) == 32
    assert choose_chunk_depth(64, 4096 * 4096 * 4, memory_mb=10) == 4  # never below 4


def test_shallower_chunks_are_wider(tmp_path):
    tiffs = make_stack(tmp_path, np.ones((10, 64, 64), dtype=np.float32))
    summary = write_multiscale(tiffs, chunk=(32, 16, 16), memory_mb=0.2, levels=2)  # 16 KiB slices
    assert summary["chunks"] == [4, 32, 32]
    group = zarr.open_group(summary["zarr"], mode="r")
    assert group["0"].chunks == (4, 32, 32) and group["1"].chunks == (4, 32, 32)
    assert np.array_equal(group["0"][:], np.ones((10, 64, 64), dtype=np.float32))


RSS_PROBE = textwrap.dedent(
    """
    import json, resource, sys
    from compute_functions.multiscale import write_multiscale
    from compute_functions.tiff_stack import open_tiff_stack
    open_tiff_stack(sys.argv[1])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    write_multiscale(sys.argv[1], sys.argv[2], chunk=(4, 128, 128), workers=2)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_mb": (peak - base) / 1024}))
    """
)


def test_peak_memory_is_bounded_by_slabs_not_volume(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "recbig"
    folder.mkdir()
    plane = rng.random((512, 512), dtype=np.float32)
    n = 200  # 200 MiB volume; 4-slice slabs are 4 MiB
    for z in range(n):
        tifffile.imwrite(folder / f"big_{z:05d}.tiff", plane + z)
    growth = last_json(run_python("-c", RSS_PROBE, str(folder), str(tmp_path / "big.zarr"), timeout=120))["growth_mb"]
    assert growth < 0.25 * n, f"RSS grew {growth:.0f} MB writing a {n} MiB volume"


# ------------------------------------------------------------------------------------------- CLI


def test_cli_writes_default_path_and_prints_json_last(tmp_path, volume):
    tiffs = make_stack(tmp_path, volume[:8])
    scan = make_scan(tmp_path / "scan.h5", pixel_size_mm=0.0013)
    summary = last_json(run_python("-m", "compute_functions.multiscale", str(tiffs), "--raw", str(scan), timeout=60))
    assert summary["zarr"] == str(tmp_path / "rec20230224_132553_sea_shell.zarr")
    assert summary["pixel_size_um"] == pytest.approx(1.3)
    assert Path(summary["zarr"]).is_dir()


def test_cli_error_is_one_line_without_traceback(tmp_path):
    proc = run_python("-m", "compute_functions.multiscale", str(tmp_path / "missing"), timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing'}: no such folder"]


def _bad_inputs(tmp_path: Path, volume: np.ndarray) -> dict[str, tuple[list[str], str]]:
    empty = tmp_path / "recempty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no tiffs here")
    corrupt = make_stack(tmp_path / "c", volume[:3])
    (corrupt / "20230224_132553_sea_shell_00008.tiff").write_bytes(b"II*\x00garbage")
    mixed = make_stack(tmp_path / "m", volume[:3])
    tifffile.imwrite(mixed / "20230224_132553_sea_shell_00010.tiff", volume[0, :10])
    duplicate = make_stack(tmp_path / "d", volume[:3])
    tifffile.imwrite(duplicate / "20230224_132553_sea_shell_00008-1.tiff", volume[0])
    gap = make_stack(tmp_path / "g", volume[:4])
    (gap / "20230224_132553_sea_shell_00008.tiff").unlink()
    multipage = make_stack(tmp_path / "p", volume[:3])
    tifffile.imwrite(multipage / "20230224_132553_sea_shell_00009.tiff", volume[:2])
    good = make_stack(tmp_path / "ok", volume[:3])
    not_h5 = tmp_path / "scan.h5"
    not_h5.write_bytes(b"\x89PNG not a scan")
    return {
        "empty": ([str(empty)], "no TIFF files"),
        "corrupt": ([str(corrupt)], "_00008.tiff: unreadable TIFF"),
        "mixed": ([str(mixed)], "_00010.tiff: shape (10, 45) float32 differs"),
        "duplicate": ([str(duplicate)], "_00008-1.tiff: not named"),
        "gap": ([str(gap)], "1 row(s) missing or off the step 1, first 00008"),
        "multipage": ([str(multipage)], "_00009.tiff: not one single-channel 2-D image (2 page(s)"),
        "missing": ([str(tmp_path / "nope")], "no such folder"),
        "not_hdf5": ([str(good), "--raw", str(not_h5)], "not an HDF5 file"),
        "missing_raw": ([str(good), "--raw", str(tmp_path / "absent.h5")], "no such scan file"),
    }


@pytest.mark.parametrize(
    "case", ["empty", "corrupt", "mixed", "duplicate", "gap", "multipage", "missing", "not_hdf5", "missing_raw"]
)
def test_cli_refuses_bad_input(tmp_path, volume, capsys, case):
    argv, reason = _bad_inputs(tmp_path, volume)[case]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert reason in lines[0]
    assert not list(tmp_path.rglob("*.zarr")) and not list(tmp_path.rglob(".*partial*"))


def test_bad_options_are_refused(tmp_path, volume):
    tiffs = make_stack(tmp_path, volume[:4])
    with pytest.raises(MultiscaleError, match=r"levels must be 1\.\.3"):
        write_multiscale(tiffs, levels=9)
    with pytest.raises(MultiscaleError, match="ngff must be"):
        write_multiscale(tiffs, ngff="0.6")
    with pytest.raises(MultiscaleError, match="positive"):
        write_multiscale(tiffs, pixel_size_um=-1)
    with pytest.raises(MultiscaleError, match="compressor must be"):
        write_multiscale(tiffs, compressor="gzip")


def test_the_preview_travels_inside_the_store_and_readers_ignore_it(tmp_path, volume):
    from PIL import Image

    tiffs = make_stack(tmp_path / "recdemo", volume)
    summary = write_multiscale(tiffs)
    png = Path(summary["preview"])
    assert png == Path(summary["zarr"]) / "preview.png"
    with Image.open(png) as image:
        assert image.size[0] > image.size[1] > 0  # xy | xz | yz side by side
    assert read_ome(Path(summary["zarr"])) is not None
    assert write_multiscale(tiffs, preview=False)["preview"] is None
    assert not png.exists()
