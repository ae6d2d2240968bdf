"""Benchmark the deletion manifests at scale: N due entries listed, read, checked/batched and removed.

    .venv/bin/python benchmarks/bench_manifests.py                  # 100 000 entries
    .venv/bin/python benchmarks/bench_manifests.py --entries 10000 --sample 100

Runs against a private Airflow home (SQLite, migrated here) and a local facility on a free port.
Measured in full on the manifest side: ``schedule_deletion`` (a sample of writes through the API, the rest
bulk-inserted as the same JSON), the paged key listing of due days, reading every entry, batching, and
removing every key. The Globus side: one real delete task of ``--sample`` paths, extrapolated to N; the
checks of N entries are benchmarks/bench_prune_check.py. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "plugins")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=200, help="entries checked through Globus")
    parser.add_argument("--api-writes", type=int, default=2_000, help="entries written through schedule_deletion")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()

    from tools.local_airflow import sandbox

    with sandbox("bench-manifests-") as (facility, _work):
        print(json.dumps(run(args, facility), indent=2))


def timed(results: dict, name: str, func, *a, **kw):
    started = time.perf_counter()
    value = func(*a, **kw)
    results[name] = round(time.perf_counter() - started, 3)
    return value


def run(args, facility) -> dict:
    from airflow.models import Variable
    from airflow.utils.session import create_session

    from als_provider.hooks.globus_transfer import GlobusTransferHook
    from include import manifests
    from include.endpoints import load_endpoints
    from include.manifests import DeletionRequest
    from include.pruning import Plan, make_batches
    from include.records import Record

    RECORD = Record(size=1024, files=1, mtime="2026-11-02 00:00:00+00:00", digest="0" * 32)

    store = manifests.MetadataDbVariables()
    now = datetime(2026, 11, 2, tzinfo=UTC)
    as_of = now + timedelta(days=30)
    n, results = args.entries, {"entries": args.entries}

    # -- write: a sample through the public API, the rest bulk-inserted (same keys and JSON) --------------
    def write_sample():
        return [
            manifests.schedule_deletion(
                endpoint="alcf832_raw",
                path=f"F{i % 500:03d}/scan_{i:06d}.h5",
                check_endpoint="data832_raw",
                location="alcf",
                dag_id="bench",
                run_id=f"run_{i // 1000}",
                record=RECORD,
                now=now + timedelta(minutes=i % 2880),
                store=store,
            )
            for i in range(min(args.api_writes, n))
        ]

    sample = timed(results, "write_api_seconds", write_sample)
    results["write_api_entries"] = len(sample)
    results["write_api_ms_per_entry"] = round(1000 * results["write_api_seconds"] / max(1, len(sample)), 3)
    template = sample[0]

    def bulk_rest():
        with create_session() as session:
            for start in range(len(sample), n, 5_000):
                rows = []
                for i in range(start, min(n, start + 5_000)):
                    not_before = now + timedelta(days=2, minutes=i % 2880)
                    entry = manifests.new_entry(
                        DeletionRequest("alcf832_raw", f"F{i % 500:03d}/scan_{i:06d}.h5", "data832_raw", "alcf"),
                        RECORD,
                        due=not_before.date(),
                        not_before=not_before,
                        dag_id="bench",
                        run_id=f"run_{i // 1000}",
                        created_at=template.created_at,
                    )
                    rows.append(Variable(key=entry.key, val=entry.to_json()))
                session.add_all(rows)
                session.commit()

    timed(results, "write_bulk_seconds", bulk_rest)

    # -- prune, manifest side, in full -------------------------------------------------------------------
    keys = timed(results, "list_due_keys_seconds", manifests.due_keys, as_of, store=store)
    entries = timed(results, "read_entries_seconds", lambda: list(manifests.load_entries(keys, store=store)))
    assert len(entries) == n, (len(entries), n)

    def plan_all():
        plan = Plan()
        for entry in entries:
            plan.deletable.setdefault((entry.endpoint, entry.path), []).append(entry)
            plan.bytes[(entry.endpoint, entry.path)] = entry.size or 0
        return make_batches(plan, args.batch_size)

    batches = timed(results, "batch_seconds", plan_all)
    results["batches"] = len(batches)
    results["batch_state_bytes_max"] = max(len(json.dumps(b)) for b in batches)
    all_keys = [key for batch in batches for key in batch["keys"]]
    timed(results, "remove_entries_seconds", manifests.remove_entries, all_keys, store=store)
    assert manifests.pending_count(store=store) == 0
    manifest_total = sum(
        results[k] for k in ("list_due_keys_seconds", "read_entries_seconds", "batch_seconds", "remove_entries_seconds")
    )
    results["manifest_side_total_seconds"] = round(manifest_total, 3)

    # -- Globus side, sampled ------------------------------------------------------------------------
    endpoints = load_endpoints()
    hook = GlobusTransferHook()
    checked = entries[: args.sample]
    for entry in checked:  # the checks themselves: benchmarks/bench_prune_check.py
        target = endpoints[entry.endpoint].posix_path(entry.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"\0" * 1024)

    def delete_one_batch():
        paths = [e.path for e in checked][: args.batch_size]
        task = hook.submit_delete(
            "alcf832_raw", paths, submission_id=hook.new_submission_id(), label="bench", ignore_missing=True
        )
        while hook.get_task(task["task_id"])["status"] not in ("SUCCEEDED", "FAILED"):
            time.sleep(0.2)
        return hook.get_task(task["task_id"])["status"]

    results["delete_batch_status"] = timed(results, "delete_batch_seconds", delete_one_batch)
    results["extrapolated_delete_seconds"] = round(results["delete_batch_seconds"] * len(batches), 1)
    results["facility_counters"] = {k: v for k, v in facility.stats().items() if k.startswith("delete")}
    return results


if __name__ == "__main__":
    main()
