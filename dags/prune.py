"""Daily prune: delete copies whose retention has passed, only where a verified copy exists elsewhere."""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag

from als_provider.operators.globus_delete import PruneManifestsOperator
from dags.pipelines.dag_ids import PRUNE_DAG_ID
from dags.pipelines.defaults import dag_defaults, with_default

DOC = """
### Prune (deletion manifests)
Every pipeline records, for each copy it makes, a deletion entry (include/manifests.py): an endpoint and
path, what it held right after the copy (every file's size and time), the endpoint holding the check copy,
and a not-before time from the location's retention (Variable `als_retention_days`: ALCF 2 days, data832
and data832_scratch 3, NERSC pscratch 7, spot832 once its data832 copy is verified).

For each entry due by `as_of` (default: now) this DAG
1. re-validates the path (inside its endpoint; nersc832 `raw/`, the long-term copy, is never pruned);
2. lists each folder once through Globus: the target must be unchanged since its record and the check copy
   hold every file with the same size; then (not for tape) the **content is compared, never written**: the
   check copy is copied into a side folder on the target's own collection and the target synced onto it by
   checksum — a file the sync transfers differs. The side folders are deleted afterwards. Otherwise the
   entry is **kept** and the reason reported. A target is "already absent" only when Globus says the path is
   missing on a known collection;
3. on a content mismatch keeps **both** copies (delete neither until a person decides) and fails the run,
   naming them (the failure mail);
4. never deletes every copy of a loop of checks (places compared by containment, across collections);
5. deletes the verified paths, one Globus delete task per endpoint per batch, and drops an entry from
   the manifest only after its delete task SUCCEEDED.

Every Globus task is deferred (no worker waits) and re-attached to on a retry; a retry checks again the
entries a service error left unchecked. `dry_run` lists and reports only: it starts no Globus task and
changes no entry (its would-delete list says "content not verified (dry run)"). `as_of` may not lie in the
future. The summary (deleted, kept and why, bytes freed) is in the task log and its return value (XCom). A
failed delete task or a check that could not be made fails the run after the rest is done; those entries
stay for the next run. Design and limits: docs/pruning.md.
"""


@dag(
    dag_id=PRUNE_DAG_ID,
    description="Delete copies past retention whose check copy is verified (deletion manifests)",
    doc_md=DOC,
    tags=["bl832", "prune", "globus", "retention"],
    **dag_defaults(
        notify=True,
        schedule="@daily",
        max_active_runs=1,  # the only remover of manifest entries: never two at once
        default_args={"retry_delay": pendulum.duration(minutes=2)},
    ),
    params={
        "dry_run": with_default(
            False,
            type="boolean",
            title="Dry run",
            description="Check and report what would be deleted; delete nothing, change no manifest entry.",
        ),
        "as_of": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="As of",
            description="Act as if it were this (past) time (ISO 8601, UTC if no zone); empty means now.",
        ),
    },
)
def prune():
    PruneManifestsOperator(task_id="prune_manifests")


prune()
