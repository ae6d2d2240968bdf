"""Issue 25 item 2: reconstruction across nodes (upstream's ``num_nodes``) on the facility, through the DAGs.

NERSC: one Slurm job of ``--nodes=n`` whose srun step runs a task per node (the stand-in's srun: parallel
processes), each a slab, then the gather; ALCF: n ``reconstruct_slab`` Compute tasks (a mapped task, each exactly
once), then ``reconstruct`` gathers. ``num_nodes`` 2 and 3 give the TIFFs of 1, bitwise (each slab takes the
whole scan's centre and the engine's slice pairs are never split: compute_functions/slabs.py); a failed slab
fails its step, and the retry redoes that slab alone; the slabs never outlive a successful run.
"""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
import tifffile
import zarr

from include.paths import parse_scan
from include.plans import rerun_folder
from include.runners.sfapi import slurm_logs
from tests.dags.dag_helpers import load_dag, recorded, states, write_scan, xcom

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]

#: 12 detector rows: 6 slice pairs, two per node on three nodes (too few for slabs aligned to the Zarr's chunks).
SHAPE = (91, 12, 96)
#: 64 rows: two slabs of 32, the default chunk depth, so the slabs' workers write the one-pass Zarr.
ALIGNED = (61, 64, 64)
NAME = "20261207_210000_phantom.h5"


def _folder(tag: str) -> str:
    token = uuid.uuid4()
    return f"BLS-{token.int % 10**5:05d}_{tag}{token.hex[:6]}"


def _stack(folder) -> dict[str, np.ndarray]:
    return {p.name: tifffile.imread(p) for p in sorted(folder.glob("*.tiff"))}


def _assert_same_stack(ours, theirs, rows: int = SHAPE[1]) -> None:
    a, b = _stack(ours), _stack(theirs)
    assert list(a) == list(b) and len(a) == rows
    for name, image in b.items():
        assert np.array_equal(a[name], image), name


def _one_node_run(local_endpoints, site: str, shape: tuple[int, int, int]):
    """A new scan where ``site``'s DAG reads it, reconstructed on one node: the DAG, its conf, the scan, the run."""
    folder = _folder("nodes")
    if site == "nersc":  # NERSC reads the long-term copy, named as the beamline names it
        write_scan(local_endpoints, "nersc832_alsdev_raw", f"{folder}/{NAME}", size=shape)
        file_path = f"/global/raw/{folder}/{NAME}"
    else:
        write_scan(local_endpoints, "data832_raw", f"{folder}/{NAME}", size=shape)
        file_path = f"{folder}/{NAME}"
    conf = {"file_path": file_path, "recon": {"engine": "fbp"}}
    dag = load_dag(f"bl832_{site}_recon", "bl832_recon.py")
    one = dag.test(run_conf=conf)
    assert one.state == "success", states(one)
    return dag, conf, parse_scan(f"{folder}/{NAME}"), one


def test_nersc_one_job_of_n_nodes_gives_the_one_node_tiffs(facility, local_endpoints):
    dag, conf, scan, _ = _one_node_run(local_endpoints, "nersc", SHAPE)
    folder, home = scan.folder, local_endpoints["data832_scratch"]
    reference = home.posix_path(f"{folder}/{scan.recon_dir_name}")
    for nodes in (2, 3):
        if nodes == 3:  # the first job's task 1 loses its node: the job fails, its retry redoes slab 1 alone
            facility.inject("sfapi", "task_fail", match="^tomo_recon_", params={"task": 1})
        run = dag.test(run_conf={**conf, "force": True, "num_nodes": nodes})
        assert run.state == "success", states(run)
        rerun = home.posix_path(f"{folder}/{rerun_folder(run.run_id)}/{scan.recon_dir_name}")
        _assert_same_stack(rerun, reference)
        job = xcom(run, "reconstruct")  # the job that succeeded
        where = slurm_logs()
        logs = local_endpoints[where.endpoint].posix_path(str(where.path))
        log = "".join((logs / f"{job['job_name']}_{job['job_id']}.{kind}").read_text() for kind in ("out", "err"))
        assert f"on {nodes} node(s)" in log
        printed = [json.loads(line) for line in log.splitlines() if line.startswith('{"dataset"')]
        assert sorted(p["slab"]["index"] for p in printed if "slab" in p) == list(range(nodes))  # a task per node
        assert [p["slabs"] for p in printed if "slabs" in p] == [nodes]  # then one gather
        scratch = local_endpoints["nersc832_alsdev_pscratch_scratch"].posix_path(f"{folder}/{rerun_folder(run.run_id)}")
        assert scratch.is_dir() and not list(scratch.glob(".*slabs*"))  # put together, then gone
        earlier = [k for k in range(nodes) if f"slab-{k:03d} was written by an earlier call" in log]
        assert earlier == ([0, 2] if nodes == 3 else [])
    assert facility.stats()["sfapi.job_created"] >= 4  # one, two, three with a retried job
    assert xcom(run, "plan", "nersc.num_nodes") == 3
    slabs = f"{folder}/{rerun_folder(run.run_id)}/.{scan.recon_dir_name}.slabs-3"
    assert any(d["path"] == slabs for d in xcom(run, "plan", "nersc.deletions"))  # pruned with the results if left


def test_alcf_n_compute_tasks_give_the_one_node_tiffs_and_a_failed_slab_reruns_alone(facility, local_endpoints):
    dag, conf, scan, one = _one_node_run(local_endpoints, "alcf", ALIGNED)
    folder, home = scan.folder, local_endpoints["data832_scratch"]
    assert states(one)["reconstruct_slab"] == "skipped"  # one node: nothing to map, reconstruct reconstructs
    reference = home.posix_path(f"{folder}/alcf/{scan.recon_dir_name}")
    before = facility.stats().get("compute.task_created.reconstruct_slab", 0)
    facility.inject("compute", "raise", match="^reconstruct_slab$", times=1, message="node lost")
    run = dag.test(run_conf={**conf, "force": True, "num_nodes": 2})
    assert run.state == "success", states(run)
    slab_tis = [ti for ti in run.get_task_instances() if ti.task_id == "reconstruct_slab"]
    assert sorted(ti.map_index for ti in slab_tis) == [0, 1] and {ti.state for ti in slab_tis} == {"success"}
    assert sorted(ti.try_number for ti in slab_tis) == [1, 2]  # the failed slab alone ran again
    assert facility.stats()["compute.task_created.reconstruct_slab"] == before + 3
    summary = xcom(run, "reconstruct")
    assert summary["slabs"] == 2 and summary["n_slices"] == ALIGNED[1]
    assert summary["zarr_staged"]  # both slab tasks wrote one store, gathered and sealed once
    assert xcom(run, "multiscale")["one_pass"]  # the multiscale step only finished it
    rerun = home.posix_path(f"{folder}/alcf/{rerun_folder(run.run_id)}/{scan.recon_dir_name}")
    _assert_same_stack(rerun, reference, ALIGNED[1])
    ours, theirs = (zarr.open_group(str(d.parent / scan.zarr_dir_name), mode="r") for d in (rerun, reference))
    assert np.array_equal(ours["0"][:], theirs["0"][:]) and np.array_equal(ours["2"][:], theirs["2"][:])


def test_alcf_a_slab_that_keeps_failing_fails_the_run_loudly(facility, local_endpoints):
    from tools.run_dag import task_errors

    folder = _folder("nodes")
    write_scan(local_endpoints, "data832_raw", f"{folder}/{NAME}", size=SHAPE)
    dag = load_dag("bl832_alcf_recon", "bl832_recon.py")
    facility.inject("compute", "raise", match="^reconstruct_slab$", times=100, message="node lost")
    with task_errors() as errors:
        run = dag.test(run_conf={"file_path": f"{folder}/{NAME}", "num_nodes": 2})
    assert run.state == "failed"
    got = states(run)
    assert got["reconstruct"] == "upstream_failed" and got["multiscale"] == "upstream_failed"
    assert got["finish"] == "failed"
    said = dict(errors)
    assert "(reconstruct_slab) failed at the endpoint" in said["reconstruct_slab"]
    assert "reconstruct_slab" in said["finish"] and "reconstruct_slab" in said.get("report", said["finish"])
    scan = parse_scan(f"{folder}/{NAME}")
    assert not local_endpoints["data832_scratch"].posix_path(f"{folder}/alcf/{scan.recon_dir_name}").exists()
    slabs = f"{folder}/alcf/.{scan.recon_dir_name}.slabs-2"  # what a failed run leaves is pruned with the results
    assert any(d["path"] == slabs for d in xcom(run, "plan", "alcf.deletions")), xcom(run, "plan", "alcf.deletions")
    left = local_endpoints["alcf832_scratch"].posix_path(slabs)
    assert not left.exists() or any(e["path"] == slabs for e in recorded(run))
