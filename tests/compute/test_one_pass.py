"""One pass to TIFF and Zarr (compute_functions/zarr_slabs.py): the reconstruction's workers write the store,
the multiscale step finishes it, and the result is the store the multiscale step writes from the TIFFs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Multiscales, Reader

from compute_functions import zarr_slabs
from compute_functions.multiscale import write_multiscale
from compute_functions.reconstruct import reconstruct_scan
from compute_functions.sample_scan import write_sample_scan
from tests.compute.compute_helpers import last_json, run_python

DS = "20260101_000000_onepass"
STORE = {"chunk": (4, 16, 16), "levels": 3}  # small chunks: several layers per worker and shared coarse layers


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    return write_sample_scan(tmp_path_factory.mktemp("scan") / f"{DS}.h5", size=(90, 37, 64))


def files(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def reference(tiff_dir: str, scan: Path, out: Path, **options) -> Path:
    """Today's writer: the multiscale step reading the TIFFs back (no staged store beside ``out``)."""
    summary = write_multiscale(tiff_dir, out, raw=scan, **options)
    assert not summary["one_pass"]
    return out


@pytest.mark.parametrize(("workers", "ngff"), [(1, "0.4"), (2, "0.4"), (3, "0.5")])
def test_one_pass_store_is_todays_store_byte_for_byte(scan, tmp_path, workers, ngff):
    options = {**STORE, "ngff": ngff}
    summary = reconstruct_scan(scan, tmp_path, engine="nufft", workers=workers, nthreads=workers, zarr=options)
    assert summary["workers"] == workers  # 2 and 3 processes wrote one store
    staged = Path(summary["zarr_staged"])
    assert staged == tmp_path / f".rec{DS}.zarr.staged" and staged.is_dir()
    done = write_multiscale(summary["tiff_dir"], tmp_path / f"rec{DS}.zarr", raw=scan, **options)
    assert done["one_pass"] and not staged.exists()
    ours = files(Path(done["zarr"]))
    today = files(reference(summary["tiff_dir"], scan, tmp_path / "today.zarr", **options))
    assert ours.keys() == today.keys()
    assert [k for k in ours if ours[k] != today[k]] == []  # chunks, .zarray/.zattrs/zarr.json, preview
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"rec{DS}", f"rec{DS}.zarr", "today.zarr"])
    group = zarr.open_group(done["zarr"], mode="r")
    stack = np.stack([tifffile.imread(p) for p in sorted(Path(summary["tiff_dir"]).glob("*.tiff"))])
    assert np.array_equal(group["0"][:], stack)  # level 0 is the TIFFs bit for bit
    if ngff == "0.4":
        node = next(n for n in Reader(parse_url(done["zarr"]))() if Multiscales.matches(n.zarr))
        assert [a.shape for a in node.data] == [(37, 64, 64), (19, 32, 32), (10, 16, 16)]


def test_default_run_stages_the_store_the_default_multiscale_step_takes(scan, tmp_path):
    summary = reconstruct_scan(scan, tmp_path, engine="nufft", rows="0:16", workers=1)
    done = write_multiscale(summary["tiff_dir"], raw=scan, preview=False)
    assert done["one_pass"] and done["zarr"] == str(tmp_path / f"rec{DS}.zarr")


def test_a_changed_stack_or_other_options_read_the_tiffs(scan, tmp_path):
    summary = reconstruct_scan(scan, tmp_path, engine="nufft", rows="0:16", workers=1, zarr=STORE)
    out = tmp_path / f"rec{DS}.zarr"
    other = write_multiscale(summary["tiff_dir"], out, raw=scan, chunk=(8, 32, 32), levels=2, preview=False)
    assert not other["one_pass"] and not Path(summary["zarr_staged"]).exists()  # a mismatch discards it

    summary = reconstruct_scan(scan, tmp_path, engine="nufft", rows="0:16", workers=1, zarr=STORE)
    first = sorted(Path(summary["tiff_dir"]).glob("*.tiff"))[0]
    tifffile.imwrite(first, np.zeros((64, 64), np.float32))  # the stack changed after the reconstruction
    done = write_multiscale(summary["tiff_dir"], out, raw=scan, preview=False, **STORE)
    assert not done["one_pass"]
    assert np.array_equal(zarr.open_group(done["zarr"], mode="r")["0"][0], np.zeros((64, 64), np.float32))

    reconstruct_scan(scan, tmp_path, engine="nufft", rows="0:16", workers=1, zarr=STORE)
    summary = reconstruct_scan(scan, tmp_path, engine="nufft", rows="0:16", workers=1, zarr=False)
    assert summary["zarr_staged"] is None and not Path(tmp_path / f".rec{DS}.zarr.staged").exists()


def test_a_failed_worker_leaves_no_store(scan, tmp_path, monkeypatch):
    import compute_functions.zarr_slabs as slabs

    def boom(self, plane):
        raise OSError("disk full")

    monkeypatch.setattr(slabs.SlabPyramid, "add", boom)
    with pytest.raises(OSError, match="disk full"):
        reconstruct_scan(scan, tmp_path, engine="nufft", rows="0:16", workers=1, zarr=STORE)
    assert list(tmp_path.iterdir()) == []


def test_blocks_start_on_the_alignment():
    from compute_functions.multiscale import store_layout
    from compute_functions.reconstruct import _split

    blocks = _split(list(range(37)), 3, 8)
    assert [b[0] for b in blocks] == [0, 16, 24] and sum(map(len, blocks)) == 37
    assert _split(list(range(5)), 2, 8) == [list(range(5))]  # fewer slices than the alignment: one block
    layout = store_layout((2160, 2560, 2560), "float32")
    assert zarr_slabs.block_alignment(layout) == 128  # depth 8, 8 levels: 2**7


def test_misaligned_block_is_refused(tmp_path):
    store = zarr_slabs.create(tmp_path / "x.zarr", (40, 32, 32), "float32", {"chunk": (8, 16, 16), "levels": 2})
    with pytest.raises(ValueError, match="aligned to 8"):
        zarr_slabs.SlabPyramid(store, 4, 40)


RSS_PROBE = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    import numpy as np
    from compute_functions import zarr_slabs
    n = int(sys.argv[2])
    store = zarr_slabs.create(Path(sys.argv[1]), (n, 1024, 1024), "float32", {"memory_mb": 100})
    pyramid = zarr_slabs.SlabPyramid(store, 0, n)
    plane = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for z in range(n):
        pyramid.add(plane + np.float32(z))
    pyramid.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_mb": (peak - base) / 1024, "chunks": store.layout.chunks}))
    """
)


def test_a_writer_holds_a_few_chunk_layers_not_its_slab(tmp_path):
    n = 96  # 384 MiB of slices; chunk layers of 8 x 4 MiB
    result = last_json(run_python("-c", RSS_PROBE, str(tmp_path / "big.zarr"), str(n), timeout=180))
    assert result["chunks"] == [8, 512, 512]
    layer_mb = 8 * 4
    assert result["growth_mb"] < 3 * layer_mb + 40, f"RSS grew {result['growth_mb']:.0f} MB for a {4 * n} MiB slab"
