"""Health check of the 8.3.2 transfer route: a fresh file moves spot832 → data832 → nersc832."""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from als_provider.operators.globus_transfer import GlobusTransferOperator
from dags.pipelines.dag_ids import TRANSFER_CHECK_DAG_ID
from dags.pipelines.defaults import dag_defaults
from include.runtime import load_runtime

POLL_SECONDS = load_runtime().poll("transfer")

PROBE_FOLDER = "transfer_check"
PROBE_PATH = "{{ ti.xcom_pull(task_ids='write_probe')['path'] }}"
PROBE_NAME = "{{ ti.xcom_pull(task_ids='write_probe')['name'] }}"

DOC = """
### Transfer health check (beamline 8.3.2)
Writes a fresh, uniquely named probe file on **spot832** (`raw/transfer_check/`), moves it with Globus
Transfer to **data832** (`data832_raw:transfer_check/`) and on to **nersc832** (`raw/transfer_check/`),
and checks size and checksum at each arrival. Any failed hop fails the run with Globus's own message.

The worker writes the probe through spot832's `posix_root` (include/config/endpoints.yaml), so it must
run where spot832's root is mounted (on the local profile: the local facility folder).
"""


@task
def write_probe(params: dict) -> dict:
    """Write ``params.size_kib`` KiB of fresh random bytes at spot832; return its path, size and md5."""
    import hashlib
    import os
    import uuid

    from include.endpoints import load_endpoints

    stamp = pendulum.now("UTC").format("YYYYMMDD_HHmmss")
    relative = f"raw/{PROBE_FOLDER}/{stamp}_{uuid.uuid4().hex[:12]}.probe"
    target = load_endpoints()["spot832"].posix_path(relative)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = os.urandom(int(params["size_kib"]) * 1024)
    target.write_bytes(payload)
    return {"path": relative, "name": target.name, "size": len(payload), "md5": hashlib.md5(payload).hexdigest()}


@task
def verify_arrival(probe: dict, endpoint: str, folder: str) -> dict:
    """Check the copy at ``endpoint:folder/<name>``: same size through Globus, same md5 where readable."""
    import hashlib

    from als_provider.hooks.globus_transfer import GlobusTransferHook
    from include.endpoints import load_endpoints
    from include.paths import EndpointPath

    where = EndpointPath(endpoint, f"{folder}/{probe['name']}")
    found = GlobusTransferHook().stat(where)
    if found is None:
        raise FileNotFoundError(f"{where} is missing after its transfer reported success")
    if found.get("size") != probe["size"]:
        raise ValueError(f"{where} has {found.get('size')} bytes, expected {probe['size']}")
    local = load_endpoints().posix(where)
    if local.is_file():
        md5 = hashlib.md5(local.read_bytes()).hexdigest()
        if md5 != probe["md5"]:
            raise ValueError(f"{where} md5 {md5} differs from the probe's {probe['md5']}")
        print(f"{where}: {found['size']} bytes, md5 {md5} matches")
    else:
        print(f"{where}: {found['size']} bytes; md5 verified by Globus (verify_checksum), not readable here")
    return where.to_dict()


@task
def publish_outputs(copies: list[dict], ti=None) -> list[dict]:
    """Publish the verified copies as the run's outputs (XCom key ``outputs``)."""
    ti.xcom_push(key="outputs", value=list(copies))
    return list(copies)


@dag(
    dag_id=TRANSFER_CHECK_DAG_ID,
    description="Move a fresh probe file spot832 → data832 → nersc832 and verify each copy",
    doc_md=DOC,
    tags=["bl832", "health-check", "globus"],
    **dag_defaults(schedule="@daily", max_active_runs=1),
    params={
        "size_kib": Param(
            64,
            type="integer",
            minimum=1,
            maximum=1024 * 1024,
            title="Probe size (KiB)",
            description="Size of the random probe file written on spot832.",
        ),
    },
)
def bl832_transfer_check():
    probe = write_probe()
    to_data832 = GlobusTransferOperator(
        task_id="spot832_to_data832",
        source_endpoint="spot832",
        source_path=PROBE_PATH,
        destination_endpoint="data832_raw",
        destination_path=f"{PROBE_FOLDER}/{PROBE_NAME}",
        recursive=False,
        poll_interval=POLL_SECONDS,
    )
    at_data832 = verify_arrival.override(task_id="verify_data832")(probe, "data832_raw", PROBE_FOLDER)
    to_nersc = GlobusTransferOperator(
        task_id="data832_to_nersc832",
        source_endpoint="data832_raw",
        source_path=f"{PROBE_FOLDER}/{PROBE_NAME}",
        destination_endpoint="nersc832",
        destination_path=f"raw/{PROBE_FOLDER}/{PROBE_NAME}",
        recursive=False,
        poll_interval=POLL_SECONDS,
    )
    at_nersc = verify_arrival.override(task_id="verify_nersc832")(probe, "nersc832", f"raw/{PROBE_FOLDER}")
    probe >> to_data832 >> at_data832 >> to_nersc >> at_nersc
    publish_outputs([at_data832, at_nersc])


bl832_transfer_check()
