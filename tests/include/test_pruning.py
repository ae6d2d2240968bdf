"""include/pruning.py without Airflow or Globus: the planner over an in-memory listing of the endpoints."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

import pytest

from include.manifests import BadEntry, ManifestEntry
from include.paths import EndpointPath
from include.pruning import (
    EXAMPLES,
    Plan,
    PruneError,
    check_entries,
    close_report,
    failure_text,
    keep_copies_that_check_each_other,
    make_batches,
    parse_as_of,
    plan_report,
    reason_kind,
    summary_text,
    verify_copy,
)

NOW = datetime(2026, 11, 2, tzinfo=UTC)
LOG = logging.getLogger("test_pruning")


class Listing:
    """Files per endpoint, listed as the Globus hook lists them (``stat``/``ls`` answers); folders implied."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, PurePosixPath], dict[str, Any]] = {}
        self.calls: list[str] = []
        self.broken: set[str] = set()  # endpoints whose listing raises

    def put(self, endpoint: str, path: str, size: int, checksum: str | None = None) -> None:
        info = {"name": PurePosixPath(path).name, "type": "file", "size": size}
        if checksum:
            info["checksum"] = checksum
        self.files[(endpoint, PurePosixPath(path))] = info

    def _check(self, where: EndpointPath) -> None:
        self.calls.append(str(where))
        if where.endpoint in self.broken:
            raise ConnectionError(f"{where.endpoint} is offline")

    def stat(self, where: EndpointPath) -> dict[str, Any] | None:
        self._check(where)
        if (where.endpoint, where.path) in self.files:
            return self.files[(where.endpoint, where.path)]
        below = any(e == where.endpoint and where.path in p.parents for e, p in self.files)
        return {"name": where.path.name, "type": "dir", "size": 0} if below else None

    def ls(self, where: EndpointPath) -> list[dict[str, Any]]:
        self._check(where)
        children = {}
        for endpoint, path in self.files:
            if endpoint == where.endpoint and where.path in path.parents:
                name = path.relative_to(where.path).parts[0]
                children[name] = self.stat(where.child(name))
        return [children[name] for name in sorted(children)]


def entry(endpoint: str, path: str, check: str, *, size: int | None = None, checksum: str | None = None, n: int = 0):
    return ManifestEntry(
        key=f"als_prune/20261102/{endpoint}/{path}/{n}",
        endpoint=endpoint,
        path=path,
        check_endpoint=check,
        location="alcf",
        not_before=NOW,
        dag_id="d",
        run_id="r",
        size=size,
        checksum=checksum,
    )


@pytest.fixture
def listing() -> Listing:
    return Listing()


# -- verify_copy --------------------------------------------------------------------------------------
def test_a_file_with_an_identical_check_copy_may_go(listing):
    listing.put("alcf832_raw", "v1/a.h5", 10, "md5:AA")
    listing.put("data832_raw", "v1/a.h5", 10, "aa")
    assert verify_copy(listing, entry("alcf832_raw", "v1/a.h5", "data832_raw", size=10)) == verify_copy(
        listing, entry("alcf832_raw", "v1/a.h5", "data832_raw")
    )
    verdict = verify_copy(listing, entry("alcf832_raw", "v1/a.h5", "data832_raw", size=10))
    assert (verdict.action, verdict.bytes) == ("delete", 10)


@pytest.mark.parametrize(
    ("target", "copy", "recorded", "kind"),
    [
        ((10, None), (10, None), 11, "target changed"),
        ((10, None), (9, None), None, "size differs"),
        ((10, "md5:aa"), (10, "md5:bb"), None, "checksum differs"),
        ((10, None), None, None, "check copy missing"),
    ],
)
def test_a_file_whose_check_copy_does_not_match_is_kept(listing, target, copy, recorded, kind):
    listing.put("alcf832_raw", "v1/a.h5", *target)
    if copy:
        listing.put("data832_raw", "v1/a.h5", *copy)
    verdict = verify_copy(listing, entry("alcf832_raw", "v1/a.h5", "data832_raw", size=recorded))
    assert (verdict.action, reason_kind(verdict.reason)) == ("keep", kind)


def test_the_recorded_checksum_wins_over_the_targets(listing):
    listing.put("alcf832_raw", "v1/a.h5", 10, "md5:aa")
    listing.put("data832_raw", "v1/a.h5", 10, "md5:aa")
    verdict = verify_copy(listing, entry("alcf832_raw", "v1/a.h5", "data832_raw", checksum="MD5:CC"))
    assert verdict.action == "keep" and "checksum differs" in verdict.reason


def test_a_missing_target_is_absent_and_a_type_mismatch_kept(listing):
    assert verify_copy(listing, entry("alcf832_raw", "v3/gone.h5", "data832_raw")).action == "absent"
    listing.put("alcf832_raw", "v3/only.h5", 1)
    listing.put("data832_raw", "v3/only.h5/inner", 1)
    verdict = verify_copy(listing, entry("alcf832_raw", "v3/only.h5", "data832_raw"))
    assert verdict.action == "keep" and verdict.reason.startswith("check copy differs")


def test_a_directory_needs_every_file_with_the_same_size(listing):
    for name, size in (("x_00000.tiff", 5), ("sub/x_00001.tiff", 7)):
        listing.put("alcf832_scratch", f"v2/rec/{name}", size)
        listing.put("data832_scratch", f"v2/rec/{name}", size)
    due = entry("alcf832_scratch", "v2/rec", "data832_scratch")
    assert (verify_copy(listing, due).action, verify_copy(listing, due).bytes) == ("delete", 12)
    assert verify_copy(listing, entry("alcf832_scratch", "v2/rec", "data832_scratch", size=13)).action == "keep"
    listing.put("alcf832_scratch", "v2/rec/sub/x_00002.tiff", 3)
    verdict = verify_copy(listing, due)
    assert verdict.action == "keep" and "check copy incomplete" in verdict.reason and "x_00002" in verdict.reason
    listing.put("data832_scratch", "v2/rec/sub/x_00002.tiff", 2)
    assert reason_kind(verify_copy(listing, due).reason) == "size differs"


def test_a_tree_too_large_to_check_is_an_error(listing):
    for i in range(5):
        listing.put("alcf832_scratch", f"big/f{i}", 1)
        listing.put("data832_scratch", f"big/f{i}", 1)
    with pytest.raises(PruneError, match="more than 3 entries"):
        verify_copy(listing, entry("alcf832_scratch", "big", "data832_scratch"), max_tree_entries=3)


# -- check_entries --------------------------------------------------------------------------------------
def test_check_entries_sorts_every_entry_and_checks_each_path_once(listing, local_endpoints):
    listing.put("alcf832_raw", "f/ok.h5", 4)
    listing.put("data832_raw", "f/ok.h5", 4)
    listing.put("alcf832_raw", "f/bad.h5", 4)
    twice = [entry("alcf832_raw", "f/ok.h5", "data832_raw", n=n) for n in (1, 2)]
    items = [
        *twice,
        entry("alcf832_raw", "f/bad.h5", "data832_raw"),
        entry("alcf832_raw", "f/gone.h5", "data832_raw"),
        entry("nersc832", "raw/f/x.h5", "data832"),  # the long-term copy: refused
        BadEntry("als_prune/20261102/broken", "not JSON"),
    ]
    plan = check_entries(listing, items, local_endpoints, log=LOG)
    assert plan.deletable == {("alcf832_raw", "f/ok.h5"): twice} and plan.bytes == {("alcf832_raw", "f/ok.h5"): 4}
    assert plan.absent == [items[3].key]
    assert [reason_kind(reason) for _, _, reason in plan.kept] == ["check copy missing", "refused", "malformed"]
    assert plan.errors == 0
    assert listing.calls.count("alcf832_raw:f/ok.h5") == 1  # two entries, one check
    assert not any(call.startswith("nersc832:") for call in listing.calls)  # refused before any look


def test_a_check_that_fails_keeps_the_entry_and_counts_an_error(listing, local_endpoints):
    listing.broken.add("alcf832_raw")
    plan = check_entries(
        listing,
        [entry("alcf832_raw", "f/a.h5", "data832_raw")],
        local_endpoints,
        describe_error=lambda exc: f"described: {exc}",
    )
    assert plan.errors == 1
    assert plan.kept[0][2] == "could not check: described: alcf832_raw is offline"


def test_a_loop_of_checks_never_deletes_every_copy(local_endpoints):
    """Two places check each other through different endpoint names of one storage; a chain ends at a survivor."""
    loop_a = entry("alcf832_raw", "f/loop.h5", "nersc832_alsdev_pscratch_raw")
    loop_b = entry("nersc832_alsdev_pscratch_raw", "f/loop.h5", "alcf832_raw")
    chain_a = entry("alcf832_raw", "f/chain.h5", "data832_raw")
    chain_b = entry("data832", "raw/f/chain.h5", "nersc832")
    plan = Plan()
    for item in (loop_a, loop_b, chain_a, chain_b):
        plan.deletable[(item.endpoint, item.path)] = [item]
        plan.bytes[(item.endpoint, item.path)] = 1
    keep_copies_that_check_each_other(plan, local_endpoints, log=LOG)
    assert set(plan.deletable) == {("alcf832_raw", "f/chain.h5"), ("data832", "raw/f/chain.h5")}
    assert set(plan.bytes) == set(plan.deletable)
    assert {key for key, _, reason in plan.kept if "loop of checks" in reason} == {loop_a.key, loop_b.key}


# -- batches and the report -----------------------------------------------------------------------------
def deletable_plan(per_endpoint: int = 5) -> Plan:
    plan = Plan()
    for i in range(per_endpoint):
        for endpoint in ("spot832", "alcf832_raw"):
            e = entry(endpoint, f"f{i}", "data832_raw")
            plan.deletable[(endpoint, e.path)] = [e]
            plan.bytes[(endpoint, e.path)] = 10 + i
    return plan


def test_batches_are_per_endpoint_bounded_and_sorted():
    batches = make_batches(deletable_plan(), 2)
    assert [(b["index"], b["endpoint"], b["paths"]) for b in batches] == [
        (0, "alcf832_raw", ["f0", "f1"]),
        (1, "alcf832_raw", ["f2", "f3"]),
        (2, "alcf832_raw", ["f4"]),
        (3, "spot832", ["f0", "f1"]),
        (4, "spot832", ["f2", "f3"]),
        (5, "spot832", ["f4"]),
    ]
    assert sum(len(b["keys"]) for b in batches) == 10 and batches[0]["bytes"] == 21
    assert {(b["status"], b["task_id"], b["submission_id"]) for b in batches} == {("pending", None, None)}
    with pytest.raises(ValueError, match="batch_size"):
        make_batches(Plan(), 0)


def test_parse_as_of():
    assert parse_as_of(None) is None and parse_as_of("") is None
    assert parse_as_of("2026-12-02") == datetime(2026, 12, 2, tzinfo=UTC)
    assert parse_as_of("2026-12-02T01:00:00+01:00") == datetime(2026, 12, 2, tzinfo=UTC)
    assert parse_as_of("2026-12-02T00:00:00Z") == datetime(2026, 12, 2, tzinfo=UTC)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_as_of("next tuesday")


def test_a_dry_run_report_says_what_would_go():
    plan = deletable_plan(1)
    plan.kept.append(("k", "alcf832_raw:x (check data832_raw)", "size differs: x has 1 bytes, y 2"))
    report = plan_report(NOW, True, 3, plan, make_batches(plan, 10))
    assert report["would_delete"] == ["alcf832_raw:f0", "spot832:f0"] and "to_delete" not in report
    assert (report["to_delete_count"], report["to_delete_bytes"], report["kept"]) == (2, 20, 1)
    assert report["kept_reasons"] == {"size differs": 1}
    text = summary_text(report)
    assert "(dry run: nothing deleted)" in text and "  - spot832:f0" in text and "  - size differs: 1" in text
    assert failure_text(report, []) is None


def test_the_closed_report_counts_deleted_and_failed_batches():
    plan = deletable_plan(2)
    batches = make_batches(plan, 10)
    report = plan_report(NOW, False, 4, plan, batches)
    batches[0].update(status="succeeded", task_id="t0")
    batches[1].update(status="failed", task_id="t1", message="PERMISSION_DENIED: no")
    closed = close_report(report, batches)
    assert (closed["deleted"], closed["deleted_paths"], closed["bytes_freed"]) == (2, 2, 21)
    assert closed["deleted_list"] == ["alcf832_raw:f0", "alcf832_raw:f1"]
    assert closed["kept"] == 2 and closed["kept_reasons"] == {"delete task failed": 2}
    assert report["kept"] == 0  # the plan's report is not changed
    text = summary_text(closed)
    assert "- deleted: 2 entr(y/ies), 2 path(s), 21 bytes freed" in text
    assert "- delete task t1 on spot832 failed: PERMISSION_DENIED: no" in text
    assert failure_text(closed, batches).startswith("1 delete task(s) failed and 0 check(s) could not be made")


def test_the_report_lists_a_bounded_number_of_examples():
    plan = Plan(kept=[(f"k{i}", f"w{i}", "refused: no") for i in range(EXAMPLES + 5)])
    report = plan_report(NOW, False, EXAMPLES + 5, plan, [])
    assert report["kept"] == EXAMPLES + 5 and len(report["kept_examples"]) == EXAMPLES
