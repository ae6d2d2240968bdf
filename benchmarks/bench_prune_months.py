"""Months of pruning, simulated on the local facility: scans, copies, health checks, daily prune, faults.

    .venv/bin/python benchmarks/bench_prune_months.py                    # 90 days, 50 scans a day, plot
    .venv/bin/python benchmarks/bench_prune_months.py --days 10 --scans 5 --plot ''

Every simulated day: ``--scans`` new scans on spot832, copied by Globus (one task per hop per day) to
data832 and nersc832; each scan reconstructed at one site in turn (alcf, nersc, local: results written where
the site writes them, then copied by Globus as its plan says); each pipeline's deletions recorded exactly as
``finish`` records them (``include.plans`` → ``include.pruning.record_copies`` → ``include.manifests``, in an
in-memory Variable store, at simulated time); the transfer health check every 12 h (probe → data832 →
nersc832, then the DAG's own ``remove_probes``); one prune a day: the prune operator's steps (due entries →
``include.pruning.check_entries`` with the content compared in side folders through Globus
(``SideFolderComparison``) → delete batches through Globus → entries removed only after their task
SUCCEEDED). Simulated time is the manifests' clock (include.pruning is called directly: the DAG refuses an
``as_of`` beyond now); files keep real times.

Faults: NERSC CFS (nersc832's storage) offline for a week — nersc832's listings answer 502 and every Globus
task touching CFS paths fails (through either NERSC collection); the day's NERSC copies wait and are made when
it is back — a failed delete task, a spot832 scan edited in place between its copy and the prune, and
**silent rot**: on random days a random copy that a pending entry compares (a target or its check copy, raw
or results, temporary or long-term) gets other bytes with its size and modification time unchanged — and
**a Clear of copy/archive tasks**: on random days random earlier ``copy_*``/``archive_*`` tasks (the site's
results folder to data832_scratch or the NERSC results archive, ``GlobusTransferOperator(replace_destination=
True)``) whose source was already pruned run again as Airflow runs a cleared task (the real operator's
``execute``, a new try whose task state store still holds the first run's), plus one whose source and
destination are both still there; each results folder carries its results manifest, as the site writes it.
Checked every day: every scan has a verified raw copy (a file with its original bytes on spot832, data832
or nersc832); nothing that changed after its copy is deleted; no file of a long-term copy (nersc832 raw, the
NERSC results archive) is ever deleted, or changed except by the simulated rot; no side folder is left; each
Clear of a pruned source fails with no retry and one of present results is a no-op (SKIPPED), and neither
submits a Globus task nor changes a file at its destination (or its staging siblings) or its source. At the
end: every rot whose entry fell due was reported (a prune's content mismatch names a pair holding the rotten
file).
Reported: each location's bytes and the manifest's size per day (a PNG with ``--plot``), and whether any
location or the manifest grows without bound (temporary locations must stay under their retention window's
worth of scans).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "plugins")]

START = datetime(2027, 1, 4, tzinfo=UTC)
SITES = ("alcf", "nersc", "local")
#: Where bytes are counted (endpoint, relative root): temporary copies, then the long-term ones.
LOCATIONS = {
    "spot832 raw": ("spot832", "raw"),
    "data832 raw": ("data832_raw", "."),
    "data832_scratch": ("data832_scratch", "."),
    "alcf raw": ("alcf832_raw", "."),
    "alcf scratch": ("alcf832_scratch", "."),
    "pscratch raw": ("nersc832_alsdev_pscratch_raw", "."),
    "pscratch scratch": ("nersc832_alsdev_pscratch_scratch", "."),
    "nersc832 raw (long-term)": ("nersc832", "raw"),
    "NERSC results archive (long-term)": ("nersc832_alsdev_scratch", "."),
}
LONG_TERM = ("nersc832 raw (long-term)", "NERSC results archive (long-term)")
#: Locations whose copies are checked against NERSC CFS (nersc832 raw, the alsdev CFS copies).
CFS_DEPENDENT = frozenset({"data832", "data832_scratch", "nersc_pscratch"})
#: The days of als_retention_days each temporary location follows (airflow_settings.yaml defaults).
WINDOW = {
    "spot832 raw": "spot832",
    "data832 raw": "data832",
    "data832_scratch": "data832_scratch",
    "alcf raw": "alcf",
    "alcf scratch": "alcf",
    "pscratch raw": "nersc_pscratch",
    "pscratch scratch": "nersc_pscratch",
}


class MemoryStore:
    """The manifests' Variable store in memory (the real manifest code on top)."""

    def __init__(self, retention: str) -> None:
        self.values: dict[str, str] = {"als_retention_days": retention}

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def set(self, key: str, value: str) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)

    def keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.values if k.startswith(prefix))


@dataclass
class Faults:
    """When each fault happens (simulated days from the start)."""

    offline: tuple[int, int] | None = (20, 27)  # NERSC CFS down from day a to day b (exclusive)
    failed_delete_day: int | None = 40
    edited_scan_day: int | None = 10
    rot_days: tuple[int, ...] = (5, 13, 22, 31, 47, 58, 66, 79)  # a random copy rots (before the day's prune)
    clear_days: tuple[int, ...] = (9, 16, 23, 29, 38, 52, 63, 75, 86)  # copy/archive tasks cleared (after the prune)
    clears: int = 3  # tasks of a pruned source cleared on each such day (and one of present results)
    seed: int = 21


@dataclass(frozen=True)
class ResultsCopy:
    """One ``copy_<kind>``/``archive_<kind>`` task as the site's DAG runs it, and the Globus task it made."""

    day: int
    dag_id: str
    run_id: str
    task_id: str
    source: Any  # EndpointPath
    destination: Any  # EndpointPath
    submission_id: str
    globus_task_id: str


@dataclass
class Day:
    day: int
    bytes: dict[str, int]
    manifest_entries: int
    manifest_bytes: int
    deleted: int
    kept: int
    check_errors: int
    failed_delete_tasks: int
    health: list[str]
    seconds: float
    mismatches: int = 0


@dataclass
class Result:
    days: list[Day] = field(default_factory=list)
    scans: int = 0
    violations: list[str] = field(default_factory=list)
    edited: str | None = None
    globus_tasks: int = 0
    rots: list[dict[str, Any]] = field(default_factory=list)  # {day, file, pair, due, reported}
    #: {day, task, destination, source_pruned, holds_rot, outcome}
    clears: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        last = self.days[-1]
        clears = Counter(
            f"{c['destination']}, source {'pruned' if c['source_pruned'] else 'present'}" for c in self.clears
        )
        return {
            "days": len(self.days),
            "scans": self.scans,
            "violations": self.violations,
            "bytes_last_day": last.bytes,
            "max_bytes": {name: max(d.bytes[name] for d in self.days) for name in LOCATIONS},
            "manifest_entries_max": max(d.manifest_entries for d in self.days),
            "manifest_entries_last": last.manifest_entries,
            "deleted": sum(d.deleted for d in self.days),
            "check_errors": sum(d.check_errors for d in self.days),
            "failed_delete_tasks": sum(d.failed_delete_tasks for d in self.days),
            "health_failures": sum(1 for d in self.days for h in d.health if h != "ok"),
            "content_mismatches": sum(d.mismatches for d in self.days),
            "rots": len(self.rots),
            "rots_reported": sum(1 for r in self.rots if r["reported"] is not None),
            "rots_reported_after_days": [r["reported"] - r["day"] for r in self.rots if r["reported"] is not None],
            "clears": len(self.clears),
            "clears_of_a_pruned_source": sum(1 for c in self.clears if c["source_pruned"]),
            "clear_outcomes": sorted({c["outcome"] for c in self.clears}),
            "clears_by_destination": dict(sorted(clears.items())),
            "clears_of_results_holding_rot": sum(1 for c in self.clears if c["holds_rot"]),
            "globus_tasks": self.globus_tasks,
            "seconds_per_day": round(sum(d.seconds for d in self.days) / len(self.days), 2),
        }


class Simulation:
    def __init__(self, facility, endpoints, *, scans: int, faults: Faults, retention: dict[str, int]) -> None:
        from als_provider.hooks.globus_transfer import GlobusTransferHook

        # no SDK back-off on the offline week's 502s (every hook made in this process, the DAG's too); put
        # back by restore_retries() (the tests run in one process with tests that count the SDK's retries)
        self._default_retries = GlobusTransferHook.__init__.__kwdefaults__["max_retries"]
        GlobusTransferHook.__init__.__kwdefaults__["max_retries"] = 0
        self.facility, self.endpoints, self.scans, self.faults = facility, endpoints, scans, faults
        self.retention = retention
        self.hook = GlobusTransferHook()
        self.store = MemoryStore(json.dumps(retention))
        self.originals: dict[str, str] = {}  # scan -> md5 of its bytes
        self.changed: set[str] = set()  # spot832 paths edited after their copy
        self.waiting_for_nersc: list[str] = []
        self.result = Result()
        self.random = random.Random(faults.seed)
        self.rotten: set[Path] = set()  # files the simulated rot changed
        self.held: set[Path] = set()  # the copies of a rotten pair: kept until a person decides
        self.long_term: dict[Path, str] = {}  # every long-term file seen -> its md5
        self.results_copies: list[ResultsCopy] = []  # every copy_*/archive_* task made, for the Clears
        self.clear_random = random.Random(faults.seed + 1)  # its own draws: the rot's stay as they were

    # -- Globus helpers ------------------------------------------------------------------------------
    def copy(
        self, source: str, destination: str, items: Iterable[tuple[str, str, bool]], label: str
    ) -> dict[str, Any] | None:
        """One Globus transfer task (checksum-verified) for several items; fails loudly. The task, with its
        ``submission_id``."""
        import globus_sdk

        items = list(items)
        if not items:
            return None
        src, dst = self.endpoints[source], self.endpoints[destination]
        data = globus_sdk.TransferData(
            source_endpoint=src.uuid,
            destination_endpoint=dst.uuid,
            label=label,
            submission_id=self.hook.new_submission_id(),
            sync_level="checksum",
            verify_checksum=True,
            preserve_timestamp=True,
        )
        for a, b, recursive in items:
            data.add_item(src.globus_path(a), dst.globus_path(b), recursive=recursive)
        task = self.wait(self.hook.client.submit_transfer(data)["task_id"])
        if task["status"] != "SUCCEEDED":
            raise RuntimeError(f"{label}: transfer {task['task_id']} {task['status']} {task.get('fatal_error')}")
        return {**task, "submission_id": data["submission_id"]}

    def wait(self, task_id: str) -> dict[str, Any]:
        self.result.globus_tasks += 1
        while (task := self.hook.get_task(task_id))["status"] not in ("SUCCEEDED", "FAILED"):
            time.sleep(0.02)
        return task

    def write(self, endpoint: str, rel: str, payload: bytes) -> None:
        path = self.endpoints[endpoint].posix_path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)

    def record(self, plan_deletions: list[dict], now: datetime, dag_id: str, run_id: str) -> None:
        """What ``finish`` does: record each copy that exists, with what it holds now."""
        from include.manifests import DeletionRequest, schedule_deletions
        from include.pruning import record_copies

        requests = [DeletionRequest.from_dict(d) for d in plan_deletions]
        schedule_deletions(record_copies(self.hook, requests), dag_id=dag_id, run_id=run_id, now=now, store=self.store)

    # -- a day ---------------------------------------------------------------------------------------
    def nersc_offline(self, day: int) -> bool:
        window = self.faults.offline
        return window is not None and window[0] <= day < window[1]

    def new_scans(self, day: int, now: datetime) -> None:
        """Scans written on spot832, copied to data832 (and nersc832 unless offline), then reconstructed."""
        from compute_functions import results_manifest
        from include.paths import EndpointPath, parse_scan
        from include.plans import TO_DATA832, TO_NERSC, due_requests, new_file_plan, site_plan
        from include.runners import GLOBUS_COMPUTE, SFAPI
        from include.sites import load_sites

        sites = load_sites()
        scans = [parse_scan(f"sim_d{day:03d}/{now:%Y%m%d}_{i:06d}_s{i:03d}.h5") for i in range(self.scans)]
        for scan in scans:
            payload = os.urandom(4096 + (hash(str(scan.relative_path)) % 4096))
            self.write("spot832", f"raw/{scan.relative_path}", payload)
            self.originals[str(scan.relative_path)] = hashlib.md5(payload).hexdigest()
        self.result.scans += len(scans)
        rel = [str(s.relative_path) for s in scans]
        self.copy("spot832", "data832", [(f"raw/{r}", f"raw/{r}", False) for r in rel], f"sim d{day} to data832")
        to_nersc = [*self.waiting_for_nersc, *rel] if not self.nersc_offline(day) else []
        if self.nersc_offline(day):
            self.waiting_for_nersc += rel
        else:
            self.copy("data832", "nersc832", [(f"raw/{r}", f"raw/{r}", False) for r in to_nersc], f"sim d{day} nersc")
            self.waiting_for_nersc = []
        for scan in scans:
            r = str(scan.relative_path)
            done = {TO_DATA832} | ({TO_NERSC} if r in to_nersc else set())
            plan = new_file_plan(scan, offsite=True)
            self.record([d.to_dict() for d in due_requests(plan, done)], now, "new_832_file", f"sim_{r}")
        for backlog in (r for r in to_nersc if r not in rel):  # the earlier days' scans copied now
            plan = new_file_plan(parse_scan(backlog), offsite=True)
            requests = [d.to_dict() for d in due_requests(plan, {TO_DATA832, TO_NERSC}) if d.endpoint == "data832"]
            self.record(requests, now, "new_832_file", f"sim_{backlog}_retry")
        # reconstructions: one site per scan in turn (nersc needs the NERSC copy)
        by_site: dict[str, list] = {name: [] for name in SITES}
        for i, scan in enumerate(scans):
            site = SITES[i % len(SITES)]
            if site == "nersc" and str(scan.relative_path) not in to_nersc:
                site = "alcf"
            by_site[site].append(scan)
        for name, site_scans in by_site.items():
            site = sites[name]
            if site.stages_raw and site.run is GLOBUS_COMPUTE:
                self.copy(
                    site.source_endpoint,
                    site.raw_endpoint,
                    [(str(s.relative_path), str(s.relative_path), False) for s in site_scans],
                    f"sim {name}",
                )
            for scan in site_scans:
                if site.run is SFAPI:  # the job stages the scan itself
                    source = self.endpoints[site.source_endpoint].posix_path(str(scan.relative_path))
                    self.write(site.raw_endpoint, str(scan.relative_path), source.read_bytes())
                for folder in scan.results(site).folders():
                    for k in range(2):
                        self.write(site.scratch_endpoint, f"{folder}/x_{k:05d}.tiff", os.urandom(1024))
                    results_manifest.write(self.endpoints[site.scratch_endpoint].posix_path(str(folder)))
            for destination in site.result_destinations():
                items = [(str(f), str(f), True) for s in site_scans for f in s.results(site).folders()]
                task = self.copy(site.scratch_endpoint, destination, items, f"sim {name} results")
                for scan in site_scans if task else ():
                    for kind, folder in zip(("tiff", "zarr"), scan.results(site).folders(), strict=True):
                        self.results_copies.append(
                            ResultsCopy(
                                day,
                                site.dag_id,
                                f"sim_{scan.relative_path}",
                                f"{'copy' if destination == site.beamline.scratch_endpoint else 'archive'}_{kind}",
                                EndpointPath(site.scratch_endpoint, str(folder)),
                                EndpointPath(destination, str(folder)),
                                task["submission_id"],
                                task["task_id"],
                            )
                        )
            for scan in site_scans:
                plan = site_plan(site, scan, {})
                self.record([d.to_dict() for d in plan.deletions], now, site.dag_id, f"sim_{scan.relative_path}")

    def edit_a_scan(self, day: int) -> None:
        """A spot832 scan rewritten in place after its copy: same size, other bytes, newer time."""
        rel = f"sim_d{day:03d}/" + sorted(os.listdir(self.endpoints["spot832"].posix_path(f"raw/sim_d{day:03d}")))[0]
        path = self.endpoints["spot832"].posix_path(f"raw/{rel}")
        size = path.stat().st_size
        time.sleep(1.1)  # a newer modification time, at Globus's one-second resolution
        path.write_bytes(os.urandom(size))
        self.changed.add(rel)
        self.result.edited = f"spot832:raw/{rel}"

    def health_check(self) -> str:
        """The transfer health check: probe → data832 → nersc832, then the DAG's own remove_probes."""
        import uuid
        from types import SimpleNamespace

        from dags.bl832_transfer_check import PROBE_FOLDER, ROUTE
        from dags.pipelines.transfer_check import remove_probes

        name = f"{uuid.uuid4().hex[:12]}.probe"
        self.write("spot832", f"raw/{PROBE_FOLDER}/{name}", os.urandom(1024))
        status = "ok"
        try:
            self.copy("spot832", "data832_raw", [(f"raw/{PROBE_FOLDER}/{name}", f"{PROBE_FOLDER}/{name}", False)], "hc")
            self.copy("data832_raw", "nersc832", [(f"{PROBE_FOLDER}/{name}", f"{PROBE_FOLDER}/{name}", False)], "hc")
        except Exception as exc:
            status = f"failed: {exc}"[:120]
        try:
            remover = remove_probes({stop.endpoint: stop.folder for stop in ROUTE}, deferrable=False, poll_interval=0.1)
            ti = SimpleNamespace(dag_id="bench_prune_months", run_id=name, task_id="remove_probes", map_index=-1,
                                 try_number=1, max_tries=0, task=SimpleNamespace(retries=0))  # fmt: skip
            remover.execute({"ti": ti, "task_state_store": MemoryStore("{}"), "params": {}})
        except Exception as exc:
            status = f"{status}; clean-up failed: {exc}"[:200]
        return status

    def rot_a_copy(self, day: int) -> None:
        """Silent rot of a random copy that a pending entry compares by content (its target or its check copy):
        other bytes, the same size and modification time."""
        from include import manifests, pruning

        entries = [
            e
            for e in manifests.load_entries(self.store.keys(manifests.KEY_PREFIX), store=self.store)
            if isinstance(e, manifests.ManifestEntry)
            and pruning.content_level(e, self.endpoints) == "checksum"
            and not (e.endpoint == "spot832" and e.path.removeprefix("raw/") in self.changed)
        ]
        self.random.shuffle(entries)
        for entry in entries:
            where = self.random.choice((entry.target, entry.check))
            place = self.endpoints[where.endpoint].posix_path(str(where.path))
            files = sorted(f for f in ([place] if place.is_file() else place.rglob("*")) if f.is_file())
            files = [f for f in files if f not in self.rotten]
            if not files:
                continue
            path = self.random.choice(files)
            info = path.stat()
            path.write_bytes(os.urandom(info.st_size))
            os.utime(path, (info.st_atime, info.st_mtime))
            self.rotten.add(path)
            if path in self.long_term:
                self.long_term[path] = hashlib.md5(path.read_bytes()).hexdigest()
            self.result.rots.append({"day": day, "file": str(path), "pair": f"{entry.target} -> {entry.check}",
                                     "reported": None})  # fmt: skip
            return

    def posix(self, text: str) -> Path:
        """The file system place of ``endpoint:path`` as prune names it."""
        endpoint, _, rel = text.strip().partition(":")
        return self.endpoints[endpoint].posix_path(rel)

    def note_mismatches(self, day: int, plan) -> int:
        """Every content mismatch must name a pair holding a rotten file (no false alarm); each rot it names is
        reported; both copies of the pair (and every copy held with them) are kept until a person decides."""
        from include import pruning

        for _, what, reason in plan.kept:
            if pruning.reason_kind(reason) in (pruning.MISMATCH, pruning.HELD):
                self.held.add(self.posix(what.partition(" (")[0]))
        for line in plan.mismatches:
            pair = line.split(": " + pruning.MISMATCH, 1)[0]
            places = [self.posix(side) for side in pair.split(" -> ")]
            self.held.update(places)
            rotten = [r for r in self.result.rots if any(Path(r["file"]) == p or p in Path(r["file"]).parents
                                                         for p in places)]  # fmt: skip
            if not rotten:
                self.result.violations.append(f"day {day}: content mismatch without rot: {line}")
            for r in rotten:
                r["reported"] = day if r["reported"] is None else r["reported"]
        return len(plan.mismatches)

    def prune(self, as_of: datetime, day: int) -> tuple[int, int, int, int, int]:
        """The prune operator's steps (include.pruning + Globus comparisons and deletes + manifest updates)."""
        from als_provider.hooks.globus_transfer import describe_globus_error
        from als_provider.operators.globus_delete import SideFolderComparison
        from include import manifests, pruning

        items = list(manifests.due_entries(as_of, store=self.store))
        content = SideFolderComparison(
            self.hook, label=f"sim prune d{day}", timeout=timedelta(minutes=5), poll_interval=0.02
        )
        plan = pruning.check_entries(
            self.hook, items, self.endpoints, content=content, describe_error=describe_globus_error, log=_quiet()
        )
        self.result.globus_tasks += len(content.tasks)
        self.result.violations += [f"day {day}: side folder left: {f}" for f in content.cleanup_failures]
        mismatches = self.note_mismatches(day, plan)
        if plan.absent:
            manifests.remove_entries(plan.absent, store=self.store)
        deleted = failed = 0
        if self.faults.failed_delete_day == day:
            self.facility.inject(
                "transfer", kind="task_failed", match=r"^/raw/sim_", times=1, message="injected: delete task failed"
            )
        for batch in pruning.make_batches(plan, 500):
            task = self.hook.submit_delete(
                batch["endpoint"],
                batch["paths"],
                submission_id=self.hook.new_submission_id(),
                label=f"sim prune d{day}",
                recursive=True,
                ignore_missing=True,
            )
            if self.wait(task["task_id"])["status"] == "SUCCEEDED":
                manifests.remove_entries(batch["keys"], store=self.store)
                deleted += len(batch["keys"])
            else:
                failed += 1
        return deleted, len(plan.kept), plan.errors, failed, mismatches

    # -- a Clear of copy/archive tasks -------------------------------------------------------------------
    def clear_copies(self, day: int) -> None:
        """A Clear of random earlier ``copy_*``/``archive_*`` tasks whose source was pruned (one of each
        destination first, then any), and of one whose source and destination are both still there (one holding
        a rotten file if there is one: a copy must not "repair" it)."""
        exists = self.endpoints.posix
        pruned = [c for c in self.results_copies if not exists(c.source).exists()]
        present = [c for c in self.results_copies if exists(c.source).exists() and exists(c.destination).exists()]
        chosen: list[ResultsCopy] = []
        for destination in sorted({c.destination.endpoint for c in pruned}):
            if len(chosen) < self.faults.clears:
                chosen.append(self.clear_random.choice([c for c in pruned if c.destination.endpoint == destination]))
        rest = [c for c in pruned if c not in chosen]
        chosen += self.clear_random.sample(rest, min(len(rest), self.faults.clears - len(chosen)))
        rotten = [c for c in present if any(self.holds_rot(where) for where in (c.source, c.destination))]
        chosen += self.clear_random.sample(rotten or present, min(len(rotten or present), 1))
        for made in chosen:
            self.clear(day, made)

    def clear(self, day: int, made: ResultsCopy) -> None:
        """Run ``made``'s task again as Airflow runs a cleared task instance: the real operator's ``execute``
        at the next try, ``max_tries`` raised by the Clear, the task state store still holding the first run's
        Globus task. A pruned source: the task fails with no retry; present results: nothing to copy (SKIPPED).
        Either way no Globus task is submitted and no file changes at the destination, its staging siblings or
        the source."""
        from types import SimpleNamespace

        from airflow.sdk.exceptions import AirflowFailException

        from als_provider.operators.base import GENERATION_KEY, RUN_KEY
        from als_provider.operators.globus_transfer import STATE_KEY, GlobusTransferOperator
        from tests.dags.dag_helpers import TaskStateStore

        retries = 2
        state = TaskStateStore()  # what the first run left: its Globus task, and that the run ended
        state.set(STATE_KEY, {"submission_id": made.submission_id, "task_id": made.globus_task_id,
                              GENERATION_KEY: 1})  # fmt: skip
        state.set(RUN_KEY, {"max_tries": retries, "first_try": 1, "ended": True})
        ti = SimpleNamespace(dag_id=made.dag_id, run_id=made.run_id, task_id=made.task_id, map_index=-1,
                             try_number=2, max_tries=1 + retries, task=SimpleNamespace(retries=retries))  # fmt: skip
        operator = GlobusTransferOperator(
            task_id=made.task_id,
            source_endpoint=made.source.endpoint,
            source_path=str(made.source.path),
            destination_endpoint=made.destination.endpoint,
            destination_path=str(made.destination.path),
            recursive=True,
            replace_destination=True,
            deferrable=False,  # a wrong copy would run to its end here, and be seen below
            poll_interval=0.05,
            retries=retries,
        )
        source_pruned = not self.endpoints.posix(made.source).exists()
        before = self.snapshot(made.destination), self.snapshot(made.source)
        counted = ("transfer.submit", "delete.submit")
        stats = self.facility.stats()
        try:
            summary = operator.execute({"ti": ti, "task_state_store": state})
            outcome = f"success: {summary.get('status')}"
        except AirflowFailException:
            outcome = "failed with no retry"
        except Exception as exc:
            outcome = f"failed (a retry follows): {type(exc).__name__}: {exc}"[:200]
        after_stats = self.facility.stats()
        what = (
            f"day {day}: a Clear of {made.dag_id} {made.task_id} ({made.source} -> {made.destination}, day {made.day})"
        )
        rot = self.holds_rot(made.source) or self.holds_rot(made.destination)
        self.result.clears.append({"day": day, "task": what, "destination": made.destination.endpoint,
                                   "source_pruned": source_pruned, "holds_rot": rot, "outcome": outcome})  # fmt: skip
        want = "failed with no retry" if source_pruned else "success: SKIPPED"
        v = self.result.violations
        if outcome != want:
            v.append(f"{what}: {outcome}, not {want}")
        if submitted := {
            k: after_stats.get(k, 0) - stats.get(k, 0) for k in counted if after_stats.get(k, 0) != stats.get(k, 0)
        }:
            v.append(f"{what} submitted Globus tasks: {submitted}")
        if (self.snapshot(made.destination), self.snapshot(made.source)) != before:
            v.append(f"{what} changed files at its destination or source")

    def holds_rot(self, where) -> bool:
        """Whether the simulated rot changed a file of the folder ``where``."""
        folder = self.endpoints.posix(where)
        return any(folder in path.parents for path in self.rotten)

    def snapshot(self, where) -> dict[str, str]:
        """md5 of every file of a results folder and of its staging siblings (``.<name>.incoming``/``.replaced``)."""
        from als_provider.operators.globus_transfer import REPLACED, STAGING

        folder = self.endpoints.posix(where)
        found = {}
        for name in (folder.name, STAGING.format(folder.name), REPLACED.format(folder.name)):
            top = folder.parent / name
            for path in [top] if top.is_file() else sorted(top.rglob("*")):
                if path.is_file():
                    found[str(path.relative_to(folder.parent))] = hashlib.md5(path.read_bytes()).hexdigest()
        return found

    # -- checks ---------------------------------------------------------------------------------------
    def measure(self) -> dict[str, int]:
        out = {}
        for name, (endpoint, rel) in LOCATIONS.items():
            root = self.endpoints[endpoint].posix_path(rel)
            out[name] = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) if root.exists() else 0
        return out

    def check_invariants(self, day: int) -> None:
        v = self.result.violations
        for rel, md5 in self.originals.items():
            # the beamline's copies, then the sites' staged ones (a rot of nersc832's copy after data832's was
            # pruned leaves the good bytes at the site, held with the rotten copy until a person decides)
            copies = [
                self.endpoints[e].posix_path(p)
                for e, p in (
                    ("spot832", f"raw/{rel}"),
                    ("data832", f"raw/{rel}"),
                    ("nersc832", f"raw/{rel}"),
                    ("nersc832_alsdev_pscratch_raw", rel),
                    ("alcf832_raw", rel),
                )
            ]
            if not any(c.is_file() and hashlib.md5(c.read_bytes()).hexdigest() == md5 for c in copies):
                v.append(f"day {day}: {rel} has no verified raw copy")
        for rel in self.changed:
            if not self.endpoints["spot832"].posix_path(f"raw/{rel}").is_file():
                v.append(f"day {day}: spot832:raw/{rel} changed after its copy and was deleted")
        for path in self.held:
            if not path.exists():
                v.append(f"day {day}: {path} (a copy whose content differed) was deleted before a person decided")
        for endpoint, rel in (("nersc832", "raw"), ("nersc832_alsdev_scratch", ".")):
            root = self.endpoints[endpoint].posix_path(rel)
            for path in (f for d in root.glob("sim_d*") for f in ([d] if d.is_file() else d.rglob("*"))):
                if not path.is_file():
                    continue
                md5 = hashlib.md5(path.read_bytes()).hexdigest()
                if self.long_term.setdefault(path, md5) != md5:
                    v.append(f"day {day}: the long-term copy {path} was overwritten")
                    self.long_term[path] = md5
        if lost := sorted(path for path in self.long_term if not path.is_file()):
            v.append(f"day {day}: {len(lost)} file(s) of a long-term copy deleted, e.g. {lost[0]}")
            for path in lost:  # reported once
                del self.long_term[path]
        sides = {self.endpoints[e].posix_path(".") / ".als-verify" for e, _ in LOCATIONS.values()}
        if left := [f for side in sides for f in side.rglob("*") if f.is_file()]:
            v.append(f"day {day}: side folder files left: {left[:3]}")

    def check_bounded(self, day: int, as_of: datetime) -> None:
        """No location or manifest grows without bound: every temporary copy is gone within its retention
        plus one daily run, and no entry stays overdue, except what is kept for a stated reason: the edited
        scan, and copies checked against NERSC CFS while it is offline (until their retention has passed
        again after it is back: the day's NERSC copies are made, and recorded, only then)."""
        from include import manifests

        v = self.result.violations

        def excused(location: str) -> bool:
            window = self.faults.offline
            return (
                window is not None
                and location in CFS_DEPENDENT
                and window[0] <= day <= window[1] + self.retention[location] + 1
            )

        for name, location in WINDOW.items():
            if excused(location):
                continue
            endpoint, rel = LOCATIONS[name]
            root = self.endpoints[endpoint].posix_path(rel)
            for folder in root.glob("sim_d*") if root.exists() else ():
                made = int(folder.name[len("sim_d") :])
                if day - made <= self.retention[location] + 1:
                    continue
                for path in (p for p in folder.rglob("*") if p.is_file()):
                    if name == "spot832 raw" and str(path.relative_to(root)) in self.changed:
                        continue
                    if any(path == held or held in path.parents for held in self.held):
                        continue
                    v.append(f"day {day}: {name} still holds {path.relative_to(root)} from day {made}")
        overdue = [
            e
            for e in manifests.due_entries(as_of - timedelta(days=1, hours=1), store=self.store)
            if not excused(e.location)
            and not (e.endpoint == "spot832" and e.path.removeprefix("raw/") in self.changed)
            and self.endpoints[e.endpoint].posix_path(e.path) not in self.held
        ]
        if overdue:
            v.append(f"day {day}: {len(overdue)} overdue manifest entr(y/ies), e.g. {overdue[0]}")

    # -- run -------------------------------------------------------------------------------------------
    def restore_retries(self) -> None:
        """Give hooks made from now on the SDK's own retries again (undo the constructor's change)."""
        from als_provider.hooks.globus_transfer import GlobusTransferHook

        GlobusTransferHook.__init__.__kwdefaults__["max_retries"] = self._default_retries

    def run(self, days: int, *, health_every_hours: int = 12, log=print) -> Result:
        try:
            return self._run(days, health_every_hours=health_every_hours, log=log)
        finally:
            self.restore_retries()

    def _run(self, days: int, *, health_every_hours: int, log) -> Result:
        from include import manifests

        nersc_uuid = self.endpoints["nersc832"].uuid
        for day in range(days):
            started = time.monotonic()
            now = START + timedelta(days=day)
            if self.faults.offline and day == self.faults.offline[0]:  # CFS: nersc832 lists 502, CFS tasks fail
                root = self.endpoints["nersc832"].globus_path(".")
                self.facility.inject(
                    "transfer",
                    kind="task_failed",
                    match=f"^{root}",
                    times=10**9,
                    message="nersc_cfs endpoint offline (GCDisconnected)",
                )
                self.facility.inject(
                    "transfer",
                    status=502,
                    match=f"/v0.10/operation/endpoint/{nersc_uuid}/",
                    times=10**9,
                    message="nersc_cfs endpoint offline (GCDisconnected)",
                )
            if self.faults.offline and day == self.faults.offline[1]:
                self.facility.reset()
            self.new_scans(day, now + timedelta(hours=1))
            if self.faults.edited_scan_day == day:
                self.edit_a_scan(day)
            if day in self.faults.rot_days:
                self.rot_a_copy(day)
            health = [self.health_check() for _ in range(24 // health_every_hours)]
            deleted, kept, errors, failed, mismatches = self.prune(now + timedelta(hours=23), day)
            if day in self.faults.clear_days:
                self.clear_copies(day)
            self.check_invariants(day)
            self.check_bounded(day, now + timedelta(hours=23))
            entries = manifests.pending_count(store=self.store)
            size = sum(len(v) for k, v in self.store.values.items() if k.startswith(manifests.KEY_PREFIX))
            record = Day(
                day,
                self.measure(),
                entries,
                size,
                deleted,
                kept,
                errors,
                failed,
                health,
                round(time.monotonic() - started, 2),
                mismatches,
            )
            self.result.days.append(record)
            log(
                f"day {day:3d}: {entries:6d} entries, deleted {deleted:4d}, kept {kept:4d}, errors {errors}, "
                f"failed deletes {failed}, content mismatches {mismatches}, health {health}, {record.seconds}s"
            )
        self.check_rots_reported(days)
        return self.result

    def check_rots_reported(self, days: int) -> None:
        """Every rot is reported by a prune, unless the simulation ended before a prune compared its pair (its
        entry not due yet, or only during the NERSC outage)."""
        for rot in self.result.rots:
            if rot["reported"] is None and rot["day"] < days - 1 - self.longest_wait(rot):
                self.result.violations.append(f"the rot of {rot['file']} (day {rot['day']}) was never reported")

    def longest_wait(self, rot: dict[str, Any]) -> int:
        """Days before a rotten pair is compared: its target's retention (+1), or the outage's end."""
        target = rot["pair"].split(" -> ")[0]
        location = {"spot832": "spot832", "data832": "data832", "data832_raw": "data832",
                    "data832_scratch": "data832_scratch", "alcf832_raw": "alcf", "alcf832_scratch": "alcf",
                    "nersc832_alsdev_pscratch_raw": "nersc_pscratch",
                    "nersc832_alsdev_pscratch_scratch": "nersc_pscratch"}[target.partition(":")[0]]  # fmt: skip
        wait = self.retention[location] + 1
        if self.faults.offline and rot["day"] < self.faults.offline[1]:
            wait = max(wait, self.faults.offline[1] - rot["day"] + 1)
        return wait


def _quiet():
    import logging

    log = logging.getLogger("bench_prune_months")
    log.setLevel(logging.ERROR)
    return log


def plot(result: Result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = [d.day for d in result.days]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for name in LOCATIONS:
        style = "--" if name in LONG_TERM else "-"
        top.plot(days, [d.bytes[name] / 2**20 for d in result.days], style, label=name)
    top.set_ylabel("bytes held (MiB)")
    top.set_yscale("symlog", linthresh=0.1)
    top.legend(fontsize=8, ncol=2)
    top.set_title(f"{len(days)} simulated days, {result.scans} scans: bytes per location (long-term dashed)")
    bottom.plot(days, [d.manifest_entries for d in result.days], color="black", label="manifest entries")
    bottom.set_ylabel("manifest entries")
    bottom.set_xlabel("simulated day")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--scans", type=int, default=50, help="scans a day")
    parser.add_argument("--plot", default=str(REPO / "docs" / "img" / "prune_months.png"))
    args = parser.parse_args()

    from include.endpoints import load_endpoints
    from tools.local_airflow import sandbox

    with sandbox("bench-prune-months-") as (facility, work):
        from airflow.models import Variable

        retention = json.loads(Variable.get("als_retention_days"))
        endpoints = load_endpoints("local", facility_root=work / "facility")
        sim = Simulation(facility, endpoints, scans=args.scans, faults=Faults(), retention=retention)
        result = sim.run(args.days)
    if args.plot:
        plot(result, Path(args.plot))
    print(json.dumps(result.summary(), indent=2))


if __name__ == "__main__":
    main()
