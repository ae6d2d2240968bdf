"""Reconstruction across nodes (issue 25 item 2), the science side: slabs of 1, 2 and 3 nodes give the one-node
stack bitwise; a missing slab stops the gather; a retry redoes only the failed slab; the CLI takes the srun
task's slab from SLURM_PROCID."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from compute_functions import remote
from compute_functions.reconstruct import blocks, reconstruct_scan
from compute_functions.sample_scan import write_sample_scan
from compute_functions.slabs import DONE, gather, reconstruct_slab, slab_dir, slabs_root

DS = "20240224_132553_phantom"
OPTIONS = {"engine": "fbp"}  # the centre is found (auto), so every slab must find the same one


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    return write_sample_scan(tmp_path_factory.mktemp("scan") / f"{DS}.h5", size=(91, 14, 96))


@pytest.fixture(scope="module")
def one_node(scan, tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    return reconstruct_scan(scan, out, OPTIONS, workers=1, zarr=False)


def _stack(folder: str | Path) -> dict[str, np.ndarray]:
    return {p.name: tifffile.imread(p) for p in sorted(Path(folder).glob("*.tiff"))}


def _slabs(scan: Path, out: Path, n: int, run_key: str | None = None) -> dict:
    tiff_dir = out / f"rec{DS}"
    for k in range(n):
        reconstruct_slab(scan, out, OPTIONS, tiff_dir=tiff_dir, slab=k, slabs=n, run_key=run_key, workers=1)
    return gather(tiff_dir, n)


@pytest.mark.parametrize("nodes", [1, 2, 3])
def test_n_slabs_give_the_one_node_stack_bitwise(scan, one_node, tmp_path, nodes):
    summary = _slabs(scan, tmp_path, nodes)
    ours, theirs = _stack(summary["tiff_dir"]), _stack(one_node["tiff_dir"])
    assert list(ours) == list(theirs) and len(ours) == 14
    for name, image in theirs.items():
        assert np.array_equal(ours[name], image), name  # bitwise: same centre, same pairs, same FFT plans
        assert (
            tifffile.TiffFile(Path(summary["tiff_dir"]) / name).pages[0].description
            == tifffile.TiffFile(Path(one_node["tiff_dir"]) / name).pages[0].description
        )
    assert summary["center"] == one_node["center"] and summary["n_slices"] == 14 and summary["slabs"] == nodes
    assert summary["rows"] == one_node["rows"]
    assert not slabs_root(summary["tiff_dir"], nodes).exists()  # the slabs go once the stack is in place
    staged = [f".rec{DS}.zarr.staged"] if summary["zarr_staged"] else []  # one node: chunk-aligned, one pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [*staged, f"rec{DS}"]


def test_more_nodes_than_slice_pairs_leave_some_slabs_empty(scan, one_node, tmp_path):
    sizes = [len(b) for b in blocks(list(range(14)), 9)]
    assert len(sizes) == 9 and sorted(sizes) == [0, 0, 2, 2, 2, 2, 2, 2, 2]  # pairs are never split
    summary = _slabs(scan, tmp_path, 9)
    assert _stack(summary["tiff_dir"]).keys() == _stack(one_node["tiff_dir"]).keys()


def test_gather_refuses_until_every_slab_is_complete(scan, tmp_path):
    tiff_dir = tmp_path / f"rec{DS}"
    reconstruct_slab(scan, tmp_path, OPTIONS, tiff_dir=tiff_dir, slab=0, slabs=2, workers=1)
    with pytest.raises(RuntimeError, match=r"gather: slab 1 of 2 not complete"):
        gather(tiff_dir, 2)
    assert not tiff_dir.exists()  # nothing half-made where the stack goes
    # a slab that died after its TIFFs but before its marker is not complete either
    reconstruct_slab(scan, tmp_path, OPTIONS, tiff_dir=tiff_dir, slab=1, slabs=2, workers=1)
    (slab_dir(tiff_dir, 1, 2) / DONE).unlink()
    with pytest.raises(RuntimeError, match=r"slab 1 of 2"):
        gather(tiff_dir, 2)


def test_slabs_of_other_options_are_refused(scan, tmp_path):
    tiff_dir = tmp_path / f"rec{DS}"
    reconstruct_slab(scan, tmp_path, OPTIONS, tiff_dir=tiff_dir, slab=0, slabs=2, workers=1)
    reconstruct_slab(scan, tmp_path, {**OPTIONS, "center": 47.0}, tiff_dir=tiff_dir, slab=1, slabs=2, workers=1)
    with pytest.raises(ValueError, match=r"slab 1 has another center"):
        gather(tiff_dir, 2)


def test_a_retry_redoes_only_the_failed_slab(scan, one_node, tmp_path):
    tiff_dir = tmp_path / f"rec{DS}"
    first = reconstruct_slab(scan, tmp_path, OPTIONS, tiff_dir=tiff_dir, slab=0, slabs=2, run_key="run-1", workers=1)
    done = slab_dir(tiff_dir, 0, 2) / DONE
    stamp = done.stat().st_mtime_ns
    again = reconstruct_slab(scan, tmp_path, OPTIONS, tiff_dir=tiff_dir, slab=0, slabs=2, run_key="run-1", workers=1)
    assert again.get("duplicate_of_earlier_call") and done.stat().st_mtime_ns == stamp  # not reconstructed again
    assert again["n_slices"] == first["n_slices"]
    reconstruct_slab(scan, tmp_path, OPTIONS, tiff_dir=tiff_dir, slab=1, slabs=2, run_key="run-1", workers=1)
    summary = gather(tiff_dir, 2)
    assert _stack(summary["tiff_dir"]).keys() == _stack(one_node["tiff_dir"]).keys()
    # a new run (another key, a Clear) reconstructs its slabs afresh
    fresh = reconstruct_slab(scan, tmp_path, OPTIONS, tiff_dir=tiff_dir, slab=0, slabs=2, run_key="run-2", workers=1)
    assert not fresh.get("duplicate_of_earlier_call")


def test_bad_slab_numbers_are_refused_in_one_line(scan, tmp_path):
    with pytest.raises(ValueError, match=r"^slab: 2: must be a whole number from 0 to 1$"):
        reconstruct_slab(scan, tmp_path, OPTIONS, tiff_dir=tmp_path / "rec", slab=2, slabs=2)
    with pytest.raises(ValueError, match=r"^slabs: 0: "):
        gather(tmp_path / "rec", 0)


def test_the_cli_takes_the_srun_tasks_slab_and_gathers(scan, one_node, tmp_path):
    tiff_dir = tmp_path / f"rec{DS}"
    for k in range(2):
        env = {**os.environ, "SLURM_PROCID": str(k)}
        cmd = [sys.executable, "-m", "compute_functions.slabs", "reconstruct", str(scan), str(tmp_path)]
        cmd += ["--tiff-dir", str(tiff_dir), "--slabs", "2", "--run-key", "job-1", "--options", json.dumps(OPTIONS)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.splitlines()[-1])["slab"]["index"] == k
    cmd = [sys.executable, "-m", "compute_functions.slabs", "gather", str(tiff_dir), "--slabs", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["n_slices"] == 14
    assert _stack(tiff_dir).keys() == _stack(one_node["tiff_dir"]).keys()


def test_a_bad_option_is_one_line_exit_2(scan, tmp_path):
    cmd = [sys.executable, "-m", "compute_functions.slabs", "reconstruct", str(scan), str(tmp_path)]
    cmd += ["--tiff-dir", str(tmp_path / "rec"), "--slabs", "2", "--slab", "0", "--options", '{"engine": "nope"}']
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and done.stderr.startswith("reconstruct: ") and len(done.stderr.splitlines()) == 1


def test_the_compute_functions_run_slabs_then_gather(scan, one_node, tmp_path):
    tiff_dir = str(tmp_path / f"rec{DS}")
    for k in range(3):
        part = remote.reconstruct_slab(str(scan), str(tmp_path), OPTIONS, tiff_dir=tiff_dir, slab=k, slabs=3)
        assert part["slab"] == {"index": k, "of": 3, "total_slices": 14}
    summary = remote.reconstruct(str(scan), str(tmp_path), OPTIONS, tiff_dir=tiff_dir, slabs=3, run_key="k")
    assert summary["slabs"] == 3 and summary["n_slices"] == 14 and summary["manifest"]
    for name, image in _stack(one_node["tiff_dir"]).items():
        assert np.array_equal(tifffile.imread(Path(tiff_dir) / name), image)


@pytest.mark.parametrize(("nodes", "workers"), [(2, 1), (3, 2)])
def test_the_slabs_write_one_pass_store_is_todays_store_byte_for_byte(scan, tmp_path, nodes, workers):
    """The slabs' workers write one store (made by the first slab), gather merges and seals it, the multiscale
    step only finishes it: the store the multiscale step writes from the TIFFs, file for file."""
    from compute_functions.multiscale import write_multiscale
    from tests.compute.test_one_pass import files, reference

    store = {"chunk": (2, 16, 16), "levels": 2}  # aligned slabs of 14 slices on 2 and 3 nodes
    tiff_dir = tmp_path / f"rec{DS}"
    for k in range(nodes):  # each slab its own run key (a Compute task each), one store key for the run
        part = reconstruct_slab(
            scan,
            tmp_path,
            OPTIONS,
            tiff_dir=tiff_dir,
            slab=k,
            slabs=nodes,
            run_key=f"task-{k}",
            store_key="run",
            workers=workers,
            zarr=store,
        )
        assert part["slab"]["zarr"]["path"].startswith(str(slabs_root(tiff_dir, nodes)))
    summary = gather(tiff_dir, nodes)
    assert summary["zarr_staged"] == str(tmp_path / f".rec{DS}.zarr.staged")
    done = write_multiscale(summary["tiff_dir"], tmp_path / f"rec{DS}.zarr", raw=scan, **store)
    assert done["one_pass"]
    today = files(reference(summary["tiff_dir"], scan, tmp_path / "today.zarr", **store))
    ours = files(Path(done["zarr"]))
    assert ours.keys() == today.keys() and [k for k in ours if ours[k] != today[k]] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"rec{DS}", f"rec{DS}.zarr", "today.zarr"])


def test_slabs_too_thin_for_aligned_chunks_write_tiffs_only(scan, tmp_path):
    tiff_dir = tmp_path / f"rec{DS}"
    for k in range(3):  # the default chunk is 32 slices deep: 14 slices cannot be cut into 3 aligned slabs
        part = reconstruct_slab(scan, tmp_path, OPTIONS, tiff_dir=tiff_dir, slab=k, slabs=3, workers=1)
        assert "zarr" not in part["slab"] and part["n_slices"] > 0
    assert gather(tiff_dir, 3)["zarr_staged"] is None


def test_the_airflow_side_names_the_slabs_as_the_science_writes_them():
    """include/ may not import compute_functions (tests/test_architecture.py): its slabs folder, the one the
    deletion manifests record, and its node bound are checked against the science's here."""
    from compute_functions.slabs import MAX_SLABS
    from dags.pipelines.params import MAX_NODES
    from include.paths import parse_scan
    from include.plans import slabs_sidecar
    from include.sites import load_sites

    site, scan = load_sites()["alcf"], parse_scan(f"BLS-00564_dyparkinson/{DS}.h5")
    tiff = scan.results(site).tiff
    assert slabs_sidecar(site, scan, 3).path == str(slabs_root(tiff, 3)).lstrip("/")
    assert MAX_NODES == MAX_SLABS
