"""New-scan steps (beamline 8.3.2): spot832 → data832 → nersc832, SciCat, deletion manifests."""

from __future__ import annotations

from airflow.sdk import task

from als_provider.operators.globus_transfer import GlobusTransferOperator
from als_provider.operators.scicat import SciCatIngestRawOperator
from include.endpoints import default_profile

DAG_ID = "bl832_new_file"
POLL_SECONDS = 1.0 if default_profile() == "local" else 10.0
#: The scan's identity, <folder>/<file>.h5, as validated by the DAG's first task.
SCAN = "{{ ti.xcom_pull(task_ids='validate_conf')['scan'] }}"

DOC = """
### New scan (beamline 8.3.2)
**Conf**: `file_path` — `/global/raw/<folder>/<file>.h5` or `<folder>/<file>.h5`; `is_export_controlled`
(default false); `send_to_nersc` (default true). Unknown keys, `..`, absolute paths outside
`/global/raw/`, non-`.h5` names are refused before anything moves.

**Steps**: spot832 `raw/<folder>/<file>` → data832 (`data832_raw:<folder>/<file>`); then, only if the scan
is not export-controlled and sending is on, data832 → nersc832 (`raw/<folder>/<file>`, the long-term copy)
and SciCat ingestion (raw dataset, datablock, thumbnail). An export-controlled scan never leaves the
beamline; the log of `offsite_allowed` says why the off-site steps were skipped.

**Deletion manifests**: spot832 (checked against data832) once the data832 copy exists; data832 (checked
against nersc832) once the NERSC copy exists — never for a scan whose only copy is at data832.

**Idempotent**: a scan already at a destination (same size and mtime) is not copied again; SciCat finds
the dataset it made instead of creating a second.
"""


@task.short_circuit(ignore_downstream_trigger_rules=False)
def offsite_allowed(params: dict | None = None) -> bool:
    """Whether the scan may leave the beamline (NERSC, SciCat); logs why not."""
    if params["is_export_controlled"]:
        print("export-controlled scan: it stays at the beamline (no nersc832 copy, no SciCat record)")
        return False
    if not params["send_to_nersc"]:
        print("send_to_nersc is off: no nersc832 copy and no SciCat record for this scan")
        return False
    return True


@task(trigger_rule="all_done")
def record_deletions(scan: str, to_data832: str, to_nersc: str, ti=None, dag_run=None, params=None) -> list[dict]:
    """Schedule the deletion of each copy that now has a verified copy elsewhere (see module docs)."""
    from include.manifests import schedule_deletions

    path = f"raw/{scan}"
    copies = []
    if ti.xcom_pull(task_ids=to_data832):
        copies.append({"endpoint": "spot832", "path": path, "check_endpoint": "data832", "location": "spot832"})
    if ti.xcom_pull(task_ids=to_nersc) and not params["is_export_controlled"]:
        copies.append({"endpoint": "data832", "path": path, "check_endpoint": "nersc832", "location": "data832"})
    return schedule_deletions(copies, dag_id=dag_run.dag_id, run_id=dag_run.run_id)


@task(trigger_rule="none_failed_min_one_success", multiple_outputs=False)
def publish_outputs(scan: str, to_nersc: str, ingest: str, ti=None) -> dict:
    """Publish where the scan now is (XCom key ``outputs``) and its SciCat pid."""
    outputs = [{"endpoint": "data832_raw", "path": scan}]
    if ti.xcom_pull(task_ids=to_nersc):
        outputs.append({"endpoint": "nersc832", "path": f"raw/{scan}"})
    ti.xcom_push(key="outputs", value=outputs)
    return {"outputs": outputs, "scicat": ti.xcom_pull(task_ids=ingest)}


def new_file_steps():
    """The new-scan steps in the current DAG or task group, after ``validate_conf``; returns (first, last)."""
    to_data832 = GlobusTransferOperator(
        task_id="spot832_to_data832",
        source_endpoint="spot832",
        source_path=f"raw/{SCAN}",
        destination_endpoint="data832_raw",
        destination_path=SCAN,
        recursive=False,
        skip_if_present=True,
        poll_interval=POLL_SECONDS,
    )
    offsite = offsite_allowed()
    to_nersc = GlobusTransferOperator(
        task_id="data832_to_nersc832",
        source_endpoint="data832_raw",
        source_path=SCAN,
        destination_endpoint="nersc832",
        destination_path=f"raw/{SCAN}",
        recursive=False,
        skip_if_present=True,
        poll_interval=POLL_SECONDS,
    )
    ingest = SciCatIngestRawOperator(task_id="scicat_ingest", file_path=SCAN, endpoint="data832_raw")
    to_data832 >> offsite >> [to_nersc, ingest]
    deletions = record_deletions(SCAN, to_data832.task_id, to_nersc.task_id)
    [to_data832, to_nersc] >> deletions
    published = publish_outputs(SCAN, to_nersc.task_id, ingest.task_id)
    [to_data832, to_nersc, ingest] >> published
    return to_data832, published
