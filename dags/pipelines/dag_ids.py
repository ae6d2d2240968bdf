"""Every fixed DAG id of dags/, in one place: DAG files and DAG-building code name other DAGs through these.

The per-site reconstruction DAGs (``bl832_<site>_recon``) and the per-beamline new-file DAGs
(``<key>_new_file``) are computed by their config objects (``Site.dag_id``, ``Beamline.dag_id``); the 8.3.2
ids below are those its configuration gives (``Tomography.dispatcher_dag_id``, ``.new_file_dag_id``; a test
checks they agree).
"""

from __future__ import annotations

#: One scan end to end: started by the beamline (API) or, once per scan, by the watcher.
DISPATCHER_DAG_ID = "bl832_dispatcher"
#: A new scan: spot832 → data832 → nersc832, SciCat, deletion manifests.
NEW_FILE_DAG_ID = "bl832_new_file"
#: Daily deletion of copies whose retention has passed (deletion manifests).
PRUNE_DAG_ID = "prune"
#: Health check of the transfer route spot832 → data832 → nersc832.
TRANSFER_CHECK_DAG_ID = "bl832_transfer_check"
#: Watches spot832 over SFTP and starts the dispatcher once per finished scan.
WATCH_SPOT832_DAG_ID = "bl832_watch_spot832"
#: Registers in SciCat what runs could not (daily and on demand).
SCICAT_CATCHUP_DAG_ID = "scicat_catchup"
