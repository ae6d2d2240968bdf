"""Checking N due entries on the facility: one listing per folder and a side-folder content comparison.

    .venv/bin/python benchmarks/bench_prune_check.py                      # 100 000 entries, 100 per folder
    .venv/bin/python benchmarks/bench_prune_check.py --entries 5000 --per-folder 50

N small scans on spot832 ``raw/``, each copied to data832 ``raw/`` (same bytes), each with the manifest entry
its pipeline's ``finish`` records (``include.pruning.record_copies`` through the real Globus hook). Then
``include.pruning.check_entries`` exactly as the prune operator calls it: one listing per folder on each side
through globus-sdk and the Transfer stand-in, then the content compared by ``SideFolderComparison`` (per group
of ≤ 10 000 pairs: a copy task check copy → side folder on spot832, a checksum sync task target → side folder
that must transfer nothing, then the side folder deleted: nothing writes into a copy). For comparison the
former check (two
``stat`` calls per entry) is timed on ``--sample`` entries and extrapolated. The manifest side (reading and
removing 100 000 Variables) is measured by benchmarks/bench_manifests.py. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "plugins")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--per-folder", type=int, default=100, help="scans per folder")
    parser.add_argument("--sample", type=int, default=300, help="entries checked the former way (2 stats)")
    args = parser.parse_args()

    from tools.local_airflow import sandbox

    with sandbox("bench-prune-check-") as (_facility, work):
        print(json.dumps(run(args, work / "facility"), indent=2))


def run(args, root: Path) -> dict:
    from als_provider.hooks.globus_transfer import GlobusTransferHook, describe_globus_error
    from als_provider.operators.globus_delete import SideFolderComparison
    from include import pruning
    from include.endpoints import load_endpoints
    from include.manifests import DeletionRequest, new_entry
    from include.paths import EndpointPath

    endpoints = load_endpoints("local", facility_root=root)
    hook = GlobusTransferHook()
    n, results = args.entries, {"entries": args.entries, "per_folder": args.per_folder}
    paths = [f"raw/bench/f{i // args.per_folder:05d}/s{i:06d}.h5" for i in range(n)]

    started = time.perf_counter()
    for path in paths:
        payload = os.urandom(64)
        for endpoint in ("spot832", "data832"):
            target = endpoints[endpoint].posix_path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(payload)
    results["write_files_s"] = round(time.perf_counter() - started, 1)

    started = time.perf_counter()
    requests = [DeletionRequest("spot832", path, "data832", "spot832") for path in paths]
    recorded = pruning.record_copies(hook, requests)
    results["record_s"] = round(time.perf_counter() - started, 1)
    now = datetime(2026, 11, 2, tzinfo=UTC)
    entries = [
        new_entry(request, record, due=now.date(), not_before=now, dag_id="bench", run_id="bench")
        for request, record in recorded
    ]

    sync = SideFolderComparison(hook, label="bench", timeout=timedelta(hours=1), poll_interval=0.5)
    content_seconds = []

    class Timed:
        def differing(self, pairs):
            started = time.perf_counter()
            try:
                return sync.differing(pairs)
            finally:
                content_seconds.append(time.perf_counter() - started)

    log = logging.getLogger("bench")
    log.setLevel(logging.ERROR)
    started = time.perf_counter()
    plan = pruning.check_entries(
        hook, entries, endpoints, content=Timed(), log=log, describe_error=describe_globus_error
    )
    total = time.perf_counter() - started
    results.update(
        check_total_s=round(total, 1),
        check_listing_s=round(total - sum(content_seconds), 1),
        check_content_s=round(sum(content_seconds), 1),
        listings=plan.listings,
        globus_tasks=len(sync.tasks),
        files_transferred_by_sync=sum(
            t["files_transferred"]
            for t in map(hook.get_task, sync.tasks)
            if t["type"] == "TRANSFER" and t["sync_level"]
        ),
        side_folder_cleanup_failures=sync.cleanup_failures,
        deletable=len(plan.deletable),
        kept=len(plan.kept),
        errors=plan.errors,
    )

    sample = paths[: args.sample]
    started = time.perf_counter()
    for path in sample:  # the former check: stat the target, stat the check copy
        hook.stat(EndpointPath("spot832", path))
        hook.stat(EndpointPath("data832", path))
    per_entry = (time.perf_counter() - started) / len(sample)
    results["former_two_stats_ms_per_entry"] = round(per_entry * 1000, 2)
    results["former_two_stats_extrapolated_s"] = round(per_entry * n, 1)
    return results


if __name__ == "__main__":
    main()
