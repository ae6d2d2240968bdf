"""include/pruning.py without Airflow or Globus: the planner over an in-memory listing of the endpoints."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

import pytest

from include.manifests import BadEntry, ManifestEntry
from include.paths import EndpointPath
from include.pruning import (
    DRY_RUN_NOTE,
    EXAMPLES,
    NotCompared,
    Plan,
    StoredContent,
    check_entries,
    close_report,
    failure_text,
    group_results,
    keep_copies_that_check_each_other,
    make_batches,
    merge_reports,
    pair_key,
    parse_as_of,
    plan_report,
    reason_kind,
    recheck_keys,
    refuse_future_as_of,
    summary_text,
    verify_copy,
    verify_groups,
)
from include.records import Folders, Record, record_of

NOW = datetime(2026, 11, 2, tzinfo=UTC)
LOG = logging.getLogger("test_pruning")
RECORD = Record(size=1, files=1, mtime="t0", digest="0" * 32)


class Listing:
    """Files per endpoint, listed as the Globus hook lists them (``listdir`` answers); folders implied.
    A listing of a missing folder raises ``FileNotFoundError``; of a ``broken`` endpoint, another error."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, PurePosixPath], dict[str, Any]] = {}
        self.calls: list[str] = []
        self.broken: set[str] = set()  # endpoints whose listing raises

    def put(self, endpoint: str, path: str, size: int, checksum: str | None = None, mtime: int = 0) -> None:
        info = {"name": PurePosixPath(path).name, "type": "file", "size": size, "last_modified": f"t{mtime}"}
        if checksum:
            info["checksum"] = checksum
        self.files[(endpoint, PurePosixPath(path))] = info

    def listdir(self, where: EndpointPath) -> list[dict[str, Any]]:
        self.calls.append(str(where))
        if where.endpoint in self.broken:
            raise ConnectionError(f"{where.endpoint} is offline")
        children: dict[str, dict[str, Any]] = {}
        for (endpoint, path), info in self.files.items():
            if endpoint == where.endpoint and (where.path in path.parents or str(where.path) == "."):
                rel = path.relative_to(where.path) if str(where.path) != "." else path
                name = rel.parts[0]
                children[name] = info if len(rel.parts) == 1 else {"name": name, "type": "dir", "size": 0}
        if not children:
            raise FileNotFoundError(str(where))
        return [children[name] for name in sorted(children)]


class Content:
    """In-memory content verification: ``sums`` holds each file's content checksum, as a checksum sync reads
    it (the listing gives none); pairs with a differing file differ. ``broken``: the comparison fails."""

    def __init__(self, listing: Listing) -> None:
        self.listing, self.calls, self.broken = listing, [], False
        self.sums: dict[tuple[str, str], str] = {}

    def differing(self, pairs):
        self.calls.append(list(pairs))
        if self.broken:
            raise ConnectionError("sync task failed")
        out = {}
        for index, (target, check, _) in enumerate(pairs):
            for endpoint, path in list(self.listing.files):
                if endpoint == target.endpoint and (path == target.path or target.path in path.parents):
                    twin = check.path / path.relative_to(target.path) if path != target.path else check.path
                    if self.sums.get((endpoint, str(path))) != self.sums.get((check.endpoint, str(twin))):
                        out[index] = f"content differs: {check}"
        return out


def record(listing: Listing, endpoint: str, path: str):
    return record_of(Folders(listing).tree(EndpointPath(endpoint, path)))


def entry(
    endpoint: str, path: str, check: str, *, listing: Listing | None = None, n: int = 0, check_path=None, rec=None
):
    """A due entry; its record is what ``listing`` holds at ``endpoint:path`` now (as a pipeline's finish)."""
    rec = rec or (record(listing, endpoint, path) if listing is not None else None)
    return ManifestEntry(
        key=f"als_prune/20261102/{endpoint}/{path}/{n}",
        endpoint=endpoint,
        path=path,
        check_endpoint=check,
        location="alcf",
        not_before=NOW,
        dag_id="d",
        run_id="r",
        size=rec.size if rec else None,
        checksum=rec.checksum if rec else None,
        files=rec.files if rec else None,
        mtime=rec.mtime if rec else None,
        digest=rec.digest if rec else None,
        check_path=check_path,
    )


@pytest.fixture
def listing() -> Listing:
    return Listing()


def verify(listing, item, **kwargs):
    return verify_copy(Folders(listing), item, **kwargs)


# -- verify_copy --------------------------------------------------------------------------------------
def test_a_file_with_an_identical_check_copy_may_go(listing):
    listing.put("alcf832_raw", "v1/a.h5", 10, "md5:AA")
    listing.put("data832_raw", "v1/a.h5", 10, "aa")
    verdict = verify(listing, entry("alcf832_raw", "v1/a.h5", "data832_raw", listing=listing))
    assert (verdict.action, verdict.bytes) == ("delete", 10)


@pytest.mark.parametrize(
    ("copy", "kind"),
    [
        ((9, None), "size differs"),
        ((10, "md5:bb"), "checksum differs"),
        (None, "check copy missing"),
    ],
)
def test_a_file_whose_check_copy_does_not_match_is_kept(listing, copy, kind):
    listing.put("alcf832_raw", "v1/a.h5", 10, "md5:aa")
    if copy:
        listing.put("data832_raw", "v1/a.h5", *copy)
    verdict = verify(listing, entry("alcf832_raw", "v1/a.h5", "data832_raw", listing=listing))
    assert (verdict.action, reason_kind(verdict.reason)) == ("keep", kind)


def test_an_entry_without_a_record_is_never_deleted(listing):
    listing.put("alcf832_raw", "v1/a.h5", 10)
    listing.put("data832_raw", "v1/a.h5", 10)
    verdict = verify(listing, entry("alcf832_raw", "v1/a.h5", "data832_raw"))
    assert (verdict.action, reason_kind(verdict.reason)) == ("keep", "unrecorded")


def test_finding_1_a_target_edited_in_place_with_the_same_size_is_kept(listing):
    """Found 1: a spot832 scan edited in place (same size, newer time) was deleted against the old copy."""
    listing.put("spot832", "raw/f/s.h5", 10, mtime=1)
    listing.put("data832", "raw/f/s.h5", 10, mtime=1)
    due = entry("spot832", "raw/f/s.h5", "data832", listing=listing)
    listing.put("spot832", "raw/f/s.h5", 10, mtime=2)  # edited after its copy: same size, newer time
    verdict = verify(listing, due)
    assert (verdict.action, reason_kind(verdict.reason)) == ("keep", "target changed")


def test_finding_1_a_zero_filled_copy_of_the_same_size_is_kept(listing, local_endpoints):
    """Found 1: a copy of the same size but other content counted as verified; content is now compared."""
    listing.put("spot832", "raw/f/s.h5", 10)
    listing.put("data832", "raw/f/s.h5", 10)  # same size; Globus listings give no checksum
    due = entry("spot832", "raw/f/s.h5", "data832", listing=listing)
    content = Content(listing)
    content.sums = {("spot832", "raw/f/s.h5"): "aa", ("data832", "raw/f/s.h5"): "00"}  # zero-filled copy
    plan = check_entries(listing, [due], local_endpoints, content=content, log=LOG)
    assert plan.deletable == {} and [reason_kind(r) for _, _, r in plan.kept] == ["content differs"]
    assert len(content.calls) == 1  # the sync ran for the pair the listing had verified
    plan = check_entries(listing, [due], local_endpoints, log=LOG)  # no content verifier: never on sizes alone
    assert plan.deletable == {} and [reason_kind(r) for _, _, r in plan.kept] == ["content not verified"]
    content.sums[("data832", "raw/f/s.h5")] = "aa"
    assert list(check_entries(listing, [due], local_endpoints, content=content, log=LOG).deletable) == [
        ("spot832", "raw/f/s.h5")
    ]


def test_a_missing_target_is_absent_and_a_type_mismatch_kept(listing):
    listing.put("alcf832_raw", "v3/other.h5", 1)
    assert verify(listing, entry("alcf832_raw", "v3/gone.h5", "data832_raw", rec=RECORD)).action == "absent"
    assert verify(listing, entry("alcf832_raw", "nowhere/gone.h5", "data832_raw", rec=RECORD)).action == "absent"
    listing.put("alcf832_raw", "v3/only.h5", 1)
    listing.put("data832_raw", "v3/only.h5/inner", 1)
    verdict = verify(listing, entry("alcf832_raw", "v3/only.h5", "data832_raw", listing=listing))
    assert verdict.action == "keep" and verdict.reason.startswith("check copy differs")


def test_a_directory_needs_every_file_with_the_same_size(listing):
    for name, size in (("x_00000.tiff", 5), ("sub/x_00001.tiff", 7)):
        listing.put("alcf832_scratch", f"v2/rec/{name}", size)
        listing.put("data832_scratch", f"v2/rec/{name}", size)
    due = entry("alcf832_scratch", "v2/rec", "data832_scratch", listing=listing)
    assert (verify(listing, due).action, verify(listing, due).bytes) == ("delete", 12)
    listing.put("data832_scratch", "v2/rec/sub/x_00001.tiff", 6)
    assert reason_kind(verify(listing, due).reason) == "size differs"
    listing.files.pop(("data832_scratch", PurePosixPath("v2/rec/sub/x_00001.tiff")))
    verdict = verify(listing, due)
    assert verdict.action == "keep" and "check copy incomplete" in verdict.reason and "x_00001" in verdict.reason
    listing.put("alcf832_scratch", "v2/rec/sub/x_00002.tiff", 3)  # a file added after the record
    assert reason_kind(verify(listing, due).reason) == "target changed"


def test_a_tree_too_large_to_check_is_an_error(listing, local_endpoints):
    for i in range(5):
        listing.put("alcf832_scratch", f"big/f{i}", 1)
        listing.put("data832_scratch", f"big/f{i}", 1)
    due = entry("alcf832_scratch", "big", "data832_scratch", listing=listing)
    plan = check_entries(listing, [due], local_endpoints, max_tree_entries=3, log=LOG)
    assert plan.errors == 1 and "more than 3 entries" in plan.kept[0][2]


# -- check_entries --------------------------------------------------------------------------------------
def test_check_entries_sorts_every_entry_and_checks_each_path_once(listing, local_endpoints):
    listing.put("alcf832_raw", "f/ok.h5", 4)
    listing.put("data832_raw", "f/ok.h5", 4)
    listing.put("alcf832_raw", "f/bad.h5", 4)
    twice = [entry("alcf832_raw", "f/ok.h5", "data832_raw", listing=listing, n=n) for n in (1, 2)]
    items = [
        *twice,
        entry("alcf832_raw", "f/bad.h5", "data832_raw", listing=listing),
        entry("alcf832_raw", "f/gone.h5", "data832_raw", rec=RECORD),
        entry("nersc832", "raw/f/x.h5", "data832", rec=RECORD),  # the long-term copy: refused
        BadEntry("als_prune/20261102/broken", "not JSON"),
    ]
    content = Content(listing)
    plan = check_entries(listing, items, local_endpoints, content=content, log=LOG)
    assert plan.deletable == {("alcf832_raw", "f/ok.h5"): twice} and plan.bytes == {("alcf832_raw", "f/ok.h5"): 4}
    assert plan.absent == [items[3].key]
    assert [reason_kind(reason) for _, _, reason in plan.kept] == ["check copy missing", "refused", "malformed"]
    assert plan.errors == 2  # a refused or malformed entry fails the run (issue 26 finding 2)
    assert len(content.calls) == 1 and len(content.calls[0]) == 1  # two entries, one content check
    assert not any(call.startswith("nersc832:") for call in listing.calls)  # refused before any look


def test_finding_7_one_listing_per_folder_not_two_stats_per_entry(listing, local_endpoints):
    """Found 7: two stats per entry; now each folder is listed once, whatever the number of entries."""
    items = []
    for i in range(200):
        listing.put("spot832", f"raw/f{i % 4}/s{i}.h5", 8)
        listing.put("data832", f"raw/f{i % 4}/s{i}.h5", 8)
    items = [entry("spot832", f"raw/f{i % 4}/s{i}.h5", "data832", listing=listing) for i in range(200)]
    listing.calls.clear()
    plan = check_entries(listing, items, local_endpoints, content=Content(listing), log=LOG)
    assert len(plan.deletable) == 200
    assert len(listing.calls) == 8 and plan.listings == 8  # 4 folders on each side


def test_a_check_that_fails_keeps_the_entry_and_counts_an_error(listing, local_endpoints):
    listing.broken.add("alcf832_raw")
    plan = check_entries(
        listing,
        [entry("alcf832_raw", "f/a.h5", "data832_raw", rec=RECORD)],
        local_endpoints,
        describe_error=lambda exc: f"described: {exc}",
    )
    assert plan.errors == 1
    assert plan.kept[0][2] == "could not check: described: alcf832_raw is offline"


def test_a_failed_content_check_keeps_the_entries_and_counts_an_error(listing, local_endpoints):
    listing.put("alcf832_raw", "f/a.h5", 4)
    listing.put("data832_raw", "f/a.h5", 4)
    content = Content(listing)
    content.broken = True
    plan = check_entries(listing, [entry("alcf832_raw", "f/a.h5", "data832_raw", listing=listing)], local_endpoints,
                         content=content, log=LOG)  # fmt: skip
    assert plan.errors == 1 and plan.deletable == {} and "could not check: content" in plan.kept[0][2]  # one pair


def test_the_regenerable_results_need_only_the_long_term_raw_copy(listing, local_endpoints):
    listing.put("data832_scratch", "f/local/recs/x_0.tiff", 5)
    due = entry("data832_scratch", "f/local/recs", "nersc832", listing=listing, check_path="raw/f/s.h5")
    plan = check_entries(listing, [due], local_endpoints, content=Content(listing), log=LOG)
    assert plan.deletable == {} and reason_kind(plan.kept[0][2]) == "check copy missing"
    listing.put("nersc832", "raw/f/s.h5", 100)
    content = Content(listing)
    plan = check_entries(listing, [due], local_endpoints, content=content, log=LOG)
    assert list(plan.deletable) == [("data832_scratch", "f/local/recs")] and content.calls == []


def deletable(*items: ManifestEntry) -> Plan:
    plan = Plan()
    for item in items:
        plan.deletable.setdefault((item.endpoint, item.path), []).append(item)
        plan.bytes[(item.endpoint, item.path)] = 1
    return plan


def test_a_loop_of_checks_never_deletes_every_copy(local_endpoints):
    """Two places check each other through different endpoint names of one storage; a chain ends at a survivor."""
    loop_a = entry("alcf832_raw", "f/loop.h5", "nersc832_alsdev_pscratch_raw")
    loop_b = entry("nersc832_alsdev_pscratch_raw", "f/loop.h5", "alcf832_raw")
    chain_a = entry("alcf832_raw", "f/chain.h5", "data832_raw")
    chain_b = entry("data832", "raw/f/chain.h5", "nersc832")
    plan = deletable(loop_a, loop_b, chain_a, chain_b)
    keep_copies_that_check_each_other(plan, local_endpoints, log=LOG)
    assert set(plan.deletable) == {("alcf832_raw", "f/chain.h5"), ("data832", "raw/f/chain.h5")}
    assert set(plan.bytes) == set(plan.deletable)
    assert {key for key, _, reason in plan.kept if "loop of checks" in reason} == {loop_a.key, loop_b.key}


def test_finding_2_a_folder_and_a_file_inside_it_that_check_each_other_are_kept(local_endpoints):
    """Found 2: the loop guard compared exact places, so both went and the file existed nowhere afterwards."""
    folder = entry("alcf832_scratch", "f/rec", "nersc832_alsdev_pscratch_scratch")
    inside = entry("nersc832_alsdev_pscratch_scratch", "f/rec/x_0.tiff", "alcf832_scratch")
    plan = deletable(folder, inside)
    keep_copies_that_check_each_other(plan, local_endpoints, log=LOG)
    assert plan.deletable == {} and len(plan.kept) == 2


def test_a_longer_cycle_across_shared_storage_is_kept_and_a_way_out_frees_it(local_endpoints):
    """A three-copy cycle: alcf → data832_raw → (nersc storage, through another collection) → alcf."""
    a = entry("alcf832_raw", "f/c.h5", "data832_raw")
    b = entry("data832_raw", "f/c.h5", "nersc832_alsdev_pscratch_raw")
    c = entry("nersc832_alsdev_pscratch_raw", "f/c.h5", "alcf832_raw")
    plan = deletable(a, b, c)
    keep_copies_that_check_each_other(plan, local_endpoints, log=LOG)
    assert plan.deletable == {}
    out = entry("nersc832_alsdev_pscratch_raw", "f/c.h5", "nersc832_alsdev_raw", n=1)  # c also has a survivor
    plan = deletable(a, b, c, out)
    keep_copies_that_check_each_other(plan, local_endpoints, log=LOG)
    assert len(plan.deletable) == 3


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


# -- issue 21 -----------------------------------------------------------------------------------------------
def test_i21_finding_1_a_content_mismatch_keeps_both_copies_and_fails_the_run(listing, local_endpoints):
    """Found 1: a differing pair kept the target but its check copy could go (or be "repaired"); now both stay:
    the target, and the check copy even where it is due itself in the same run; the run fails naming them."""
    for endpoint in ("spot832", "data832", "nersc832"):
        listing.put(endpoint, "raw/f/s.h5", 10)
    spot = entry("spot832", "raw/f/s.h5", "data832", listing=listing)
    data = entry("data832", "raw/f/s.h5", "nersc832", listing=listing, n=1)
    content = Content(listing)
    content.sums = {
        ("spot832", "raw/f/s.h5"): "aa",
        ("data832", "raw/f/s.h5"): "rot",
        ("nersc832", "raw/f/s.h5"): "rot",
    }
    plan = check_entries(listing, [spot, data], local_endpoints, content=content, log=LOG)
    assert plan.deletable == {}
    assert sorted(reason_kind(r) for _, _, r in plan.kept) == ["content differs", "held"]
    assert plan.mismatches and "spot832:raw/f/s.h5 -> data832:raw/f/s.h5" in plan.mismatches[0]
    report = close_report(plan_report(NOW, False, 2, plan, []), [])
    assert report["content_mismatch_count"] == 1
    assert failure_text(report, []).startswith("CONTENT DIFFERS for 1 pair(s) of copies, e.g. spot832:raw/f/s.h5")
    assert recheck_keys(plan) == []  # a mismatch is not a transient error: a retry does not re-run it


def test_i21_finding_2_a_dry_run_compares_nothing_and_says_so(listing, local_endpoints):
    """Found 2: a dry run ran the checksum syncs (which wrote); it now starts no comparison and says so."""
    listing.put("alcf832_raw", "f/a.h5", 4)
    listing.put("data832_raw", "f/a.h5", 4)
    due = entry("alcf832_raw", "f/a.h5", "data832_raw", listing=listing)
    plan = check_entries(listing, [due], local_endpoints, content=NotCompared(), log=LOG)
    report = plan_report(NOW, True, 1, plan, make_batches(plan, 10))
    assert report["would_delete"] == [f"alcf832_raw:f/a.h5 ({DRY_RUN_NOTE})"] and report["content_not_verified"] == 1


def test_i21_finding_10_as_of_beyond_now_is_refused():
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    assert refuse_future_as_of(now + timedelta(minutes=4), now) == now + timedelta(minutes=4)
    assert refuse_future_as_of(now - timedelta(days=30), now) == now - timedelta(days=30)
    with pytest.raises(ValueError, match=r"^as_of 2026-12-10T12:00:00\+00:00 is in the future .*leave as_of empty"):
        refuse_future_as_of(now + timedelta(days=3), now)


def test_i21_finding_3_group_results_count_every_transferred_file_of_every_pair(local_endpoints):
    """Found 3: the transferred files were read from the first page only; every path given here counts."""
    pairs = [
        (EndpointPath("alcf832_scratch", f"f/rec{i}"), EndpointPath("data832_scratch", f"f/rec{i}"), True)
        for i in range(12)
    ]
    groups, refused = verify_groups(pairs, "t0", local_endpoints, max_items=5)
    assert refused == {} and [len(g["items"]) for g in groups] == [5, 5, 2]
    sides = [item[3] for g in groups for item in g["items"]]
    assert all(side.startswith(".als-verify/t0/") for side in sides) and len(set(sides)) == 12
    last = groups[2]
    found = group_results(last, [f"{last['items'][1][3]}/x_{k}.tiff" for k in range(3)], "task-9")
    assert found[last["items"][0][0]] == "" and reason_kind(found[last["items"][1][0]]) == "content differs"
    assert "3 file(s) of alcf832_scratch:f/rec11 differ" in found[last["items"][1][0]]
    # a pair that was not compared in this round is kept, never deleted
    answer = StoredContent(found).differing([pairs[0], pairs[11]])
    assert reason_kind(answer[0]) == "could not check" and reason_kind(answer[1]) == "content differs"
    assert pair_key(*pairs[11][:2]) in found


def test_a_side_folder_that_would_overlap_a_copy_is_refused(local_endpoints):
    """The comparison writes only side folders: one that overlaps a compared copy is never used."""
    pair = (EndpointPath("alcf832_raw", ".als-verify/t1/x.h5"), EndpointPath("data832_raw", "x.h5"), False)
    groups, refused = verify_groups([pair], "t1", local_endpoints)
    assert groups == [] and "overlaps" in refused[pair_key(*pair[:2])]


def test_i21_finding_15_a_retry_round_rechecks_only_what_could_not_be_checked(listing, local_endpoints):
    """Found 15: a retry resumed the saved plan, so a transient check error was never checked again."""
    listing.put("alcf832_raw", "f/a.h5", 4)
    listing.put("data832_raw", "f/a.h5", 4)
    listing.put("alcf832_raw", "f/b.h5", 4)
    ok = entry("alcf832_raw", "f/a.h5", "data832_raw", listing=listing)
    broken = entry("alcf832_raw", "f/b.h5", "data832_raw", listing=listing, n=1)
    listing.broken.add("data832_raw")
    first = check_entries(listing, [ok, broken], local_endpoints, content=Content(listing), log=LOG)
    assert sorted(recheck_keys(first)) == sorted([ok.key, broken.key]) and first.errors == 2
    earlier = close_report(plan_report(NOW, False, 2, first, []), [])
    listing.broken.clear()
    listing.put("data832_raw", "f/b.h5", 4)
    second = check_entries(listing, load_again := [ok, broken], local_endpoints, content=Content(listing), log=LOG)
    batches = make_batches(second, 10)
    later = close_report(plan_report(NOW, False, len(load_again), second, batches),
                         [dict(b, status="succeeded") for b in batches])  # fmt: skip
    merged = merge_reports(earlier, later, rechecked=2)
    assert (merged["deleted"], merged["kept"], merged["check_errors"], merged["rounds"]) == (2, 0, 0, 2)
    assert merged["kept_reasons"] == {} and failure_text(merged, []) is None
