"""A new scan of beamline 8.3.2: spot832 → data832 → nersc832, SciCat, deletion manifests."""

from __future__ import annotations

from airflow.sdk import DAG

from dags.pipelines.dag_ids import NEW_FILE_DAG_ID
from dags.pipelines.defaults import dag_defaults
from dags.pipelines.params import new_scan_params
from dags.pipelines.steps import new_file_steps, plan
from include.plans import NEW_FILE

DOC = """
### New scan (beamline 8.3.2)
**Conf**: `file_path` — `/global/raw/<folder>/<file>.h5` or `<folder>/<file>.h5`; `is_export_controlled`
(default false); `send_to_nersc` (default true). Unknown keys, `..`, absolute paths outside
`/global/raw/`, non-`.h5` names are refused by `plan` before anything moves.

**Steps**: spot832 `raw/<folder>/<file>` → data832 (`data832_raw:<folder>/<file>`); then, only if the scan
is not export-controlled and sending is on, data832 → nersc832 (`raw/<folder>/<file>`, the long-term copy)
and SciCat ingestion (raw dataset, datablock, thumbnail). An export-controlled scan never leaves the
beamline: `plan` skips the off-site steps and its log says why. Export control is a property of the
scan: `is_export_controlled: true` records it (signed Variable `als_export_control/…`) before anything moves,
a later `false` changes nothing, and every off-site step refuses it (docs/security.md).

**Deletion manifests** (`finish`): spot832 (checked against data832) once the data832 copy exists; data832
(checked against nersc832) once the NERSC copy exists — never for a scan whose only copy is at data832.

**Idempotent**: a scan already at a destination (same size and mtime) is not copied again; SciCat finds
the dataset it made instead of creating a second.
"""

with DAG(
    dag_id=NEW_FILE_DAG_ID,
    description="Move a new scan spot832 → data832 → nersc832 and register it in SciCat",
    doc_md=DOC,
    tags=["bl832", "new-scan", "globus", "scicat"],
    params=new_scan_params(),
    **dag_defaults(),
) as dag:
    new_file_steps(plan([NEW_FILE], False))
