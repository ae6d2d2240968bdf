"""Airflow DAG: health check of the 8.3.2 transfer route (spot832 → data832 → nersc832), every 12 h."""

from __future__ import annotations

from dags.pipelines.dag_ids import TRANSFER_CHECK_DAG_ID
from dags.pipelines.transfer_check import Stop, make_transfer_check_dag
from include.transfer_seeds import BL832_FIRST_STOP, SEED_NAME

PROBE_FOLDER = "transfer_check"
#: Where the probe lands on each endpoint (never nersc832 ``raw/``, the protected long-term copy); the seed is
#: on the first stop (include/transfer_seeds.py).
ROUTE = [
    Stop(*BL832_FIRST_STOP, "spot832"),
    Stop("data832_raw", PROBE_FOLDER, "data832"),
    Stop("nersc832", PROBE_FOLDER, "nersc832"),
]

DOC = f"""
### Transfer health check (beamline 8.3.2)
Every 12 h (00:00 and 12:00 America/Los_Angeles), copies the seed **spot832** `raw/transfer_check/{SEED_NAME}`
(put there once at deployment) with Globus Transfer, checksum-verified, to a fresh, uniquely named probe on
**data832** (`data832_raw:transfer_check/`) and on to **nersc832** (`transfer_check/`, outside the protected
`raw/`), and checks its size through Globus at each arrival. Any failed hop fails the run with Globus's own message
and notifies the team. Whatever happened, `remove_probes` then deletes every probe (`*.probe`, this run's and any an
earlier try left; never the seed) in the three probe folders with Globus delete tasks and lists the folders to
verify they are gone; the run fails if one remains. Probes of earlier
versions in nersc832 `raw/transfer_check/`: see docs/pruning.md. Built by dags/pipelines/transfer_check.py (the
7.3.3 and 7.0.1.2 checks too).

Globus only, as upstream's flight check: no task reads a beamline's disk, so any worker runs it
(docs/operations.md, "Health checks").
"""

dag = make_transfer_check_dag(
    TRANSFER_CHECK_DAG_ID,
    ROUTE,
    description="Copy the seed as a fresh probe spot832 → data832 → nersc832 and verify each copy",
    doc_md=DOC,
    tags=["bl832"],
    owner="bl832-computing",
)
