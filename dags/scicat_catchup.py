"""Daily (and on demand): register in SciCat what runs could not, once SciCat answers again."""

from __future__ import annotations

from airflow.sdk import DAG, task

from als_provider.operators.scicat import SciCatIngestDerivedOperator, SciCatIngestRawOperator
from dags.pipelines.dag_ids import SCICAT_CATCHUP_DAG_ID
from dags.pipelines.defaults import dag_defaults, with_default

DOC = """
### SciCat catch-up
A run never waits for SciCat: when a SciCat step fails after its retries (SciCat down, a proxy error) while
the copies and the reconstruction succeeded, the pipeline's `finish` records what that step was asked to
do (Airflow Variables `als_scicat_pending/<dag_id>/<run_id>/<task_id>`, include/catalogue_backlog.py) and
the run ends failed, naming SciCat.

This DAG (daily, or trigger it once SciCat is back) replays every owed registration with the same
operators: raw datasets first (`register_raw`, one mapped task each), then derived datasets
(`register_derived`, which link their raw dataset). The operators find a dataset an earlier attempt made,
and every dataset is created with a pid computed from its key, which SciCat refuses to create twice: two
tasks registering one scan at once (two entries for it, a Clear meanwhile) make one dataset. A raw entry
whose data832 copy is gone reads the long-term copy it names; while an entry is owed the prune keeps the
copies it reads (`held_copies`). `settle` removes the entries that succeeded and fails the run,
naming the rest, if any is still owed (they stay for the next run). `dry_run` lists what is owed.
"""

with DAG(
    dag_id=SCICAT_CATCHUP_DAG_ID,
    description="Register in SciCat the scans and results that runs could not (SciCat down)",
    doc_md=DOC,
    tags=["scicat", "catch-up", "bl832", "bl733"],
    params={
        "dry_run": with_default(
            False, type="boolean", title="Dry run", description="List what is owed; register nothing."
        )
    },
    **dag_defaults(schedule="@daily", max_active_runs=1, notify=True),
) as dag:

    @task
    def owed(params=None) -> dict:
        """What is owed, raw registrations first; entries that cannot be read are reported (and kept)."""
        from include.catalogue_backlog import pending
        from include.catalogue_backlog import settle as remove
        from include.export_control import find_controlled

        entries, unreadable = pending()
        for key, reason in unreadable.items():
            print(f"kept, cannot be read: {key}: {reason}")
        # an export-controlled scan is never catalogued, so nothing is owed for it (issue 26)
        controlled = [key for key, item in entries if find_controlled(item.kwargs.get("file_path"))]
        for key in controlled:
            print(f"not owed, export-controlled (never catalogued): {key}")
        entries = [(key, item) for key, item in entries if key not in controlled]
        for _, item in entries:
            print(f"owed: {item.describe()}")
        if params["dry_run"]:
            entries = []
        else:
            remove(controlled)
        by_kind = {
            kind: [(key, item.kwargs) for key, item in entries if item.kind == kind] for kind in ("raw", "derived")
        }
        return {
            "raw": [kwargs for _, kwargs in by_kind["raw"]],
            "raw_keys": [key for key, _ in by_kind["raw"]],
            "derived": [kwargs for _, kwargs in by_kind["derived"]],
            "derived_keys": [key for key, _ in by_kind["derived"]],
            "unreadable": sorted(unreadable),
        }

    @task(trigger_rule="all_done")
    def settle(found: dict, ti=None) -> dict:
        """Remove the entries whose registration succeeded; fail naming those still owed."""
        from airflow.sdk.exceptions import AirflowFailException

        from include.catalogue_backlog import settle as remove

        done, still = [], []
        for kind in ("raw", "derived"):
            for index, key in enumerate(found[f"{kind}_keys"]):
                result = ti.xcom_pull(task_ids=f"register_{kind}", map_indexes=index)
                (done if isinstance(result, dict) and result.get("pid") else still).append(key)
        remove(done)
        print(f"registered: {len(done)}; still owed: {len(still)}")
        if still or found["unreadable"]:
            raise AirflowFailException(  # no retry: the next run tries them again
                f"SciCat: {len(still)} registration(s) still owed ({', '.join(still)})"
                + (f"; unreadable entries kept: {', '.join(found['unreadable'])}" if found["unreadable"] else "")
            )
        return {"registered": done}

    @task
    def arguments(found: dict, kind: str) -> list[dict]:
        """The operator arguments of the owed ``kind`` registrations, in the order of ``found``'s keys."""
        return found[kind]

    found = owed()
    raw = SciCatIngestRawOperator.partial(task_id="register_raw").expand_kwargs(
        arguments.override(task_id="raw_arguments")(found, "raw")
    )
    derived = SciCatIngestDerivedOperator.partial(task_id="register_derived", trigger_rule="all_done").expand_kwargs(
        arguments.override(task_id="derived_arguments")(found, "derived")
    )
    raw >> derived >> settle(found)
