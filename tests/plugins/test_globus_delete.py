"""include.pruning's checks through the real GlobusTransferHook against the facility's Transfer stand-in."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from als_provider.hooks.globus_transfer import GlobusTransferHook
from include.manifests import ManifestEntry
from include.pruning import Plan, make_batches, parse_as_of, verify_copy

NOW = datetime(2026, 11, 2, tzinfo=UTC)


def entry(endpoint: str, path: str, check: str, size: int | None = None, checksum: str | None = None):
    return ManifestEntry(
        key=f"als_prune/20261102/{endpoint}{path}".replace(":", ""),
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
def put(local_endpoints):
    def put(endpoint: str, rel: str, payload: bytes) -> None:
        path = local_endpoints[endpoint].posix_path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)

    return put


@pytest.fixture
def hook(facility, airflow_db):
    return GlobusTransferHook()


def test_a_file_with_an_identical_check_copy_may_go(hook, put):
    put("alcf832_raw", "v1/a.h5", b"a" * 10)
    put("data832_raw", "v1/a.h5", b"a" * 10)
    assert verify_copy(hook, entry("alcf832_raw", "v1/a.h5", "data832_raw", size=10)).action == "delete"
    # the target changed since it was scheduled: kept
    verdict = verify_copy(hook, entry("alcf832_raw", "v1/a.h5", "data832_raw", size=11))
    assert (verdict.action, verdict.reason.split(":")[0]) == ("keep", "target changed")


def test_a_directory_needs_every_file_with_the_same_size(hook, put):
    for name, size in (("x_00000.tiff", 5), ("sub/x_00001.tiff", 7)):
        put("alcf832_scratch", f"v2/rec/{name}", b"t" * size)
        put("data832_scratch", f"v2/rec/{name}", b"t" * size)
    verdict = verify_copy(hook, entry("alcf832_scratch", "v2/rec", "data832_scratch"))
    assert (verdict.action, verdict.bytes) == ("delete", 12)
    put("alcf832_scratch", "v2/rec/sub/x_00002.tiff", b"new")
    verdict = verify_copy(hook, entry("alcf832_scratch", "v2/rec", "data832_scratch"))
    assert verdict.action == "keep" and "check copy incomplete" in verdict.reason and "x_00002" in verdict.reason
    put("data832_scratch", "v2/rec/sub/x_00002.tiff", b"ne")
    verdict = verify_copy(hook, entry("alcf832_scratch", "v2/rec", "data832_scratch"))
    assert verdict.action == "keep" and verdict.reason.startswith("size differs")


def test_missing_target_is_absent_and_missing_check_is_kept(hook, put):
    assert verify_copy(hook, entry("alcf832_raw", "v3/gone.h5", "data832_raw")).action == "absent"
    put("alcf832_raw", "v3/only.h5", b"1")
    verdict = verify_copy(hook, entry("alcf832_raw", "v3/only.h5", "data832_raw"))
    assert verdict.action == "keep" and verdict.reason.startswith("check copy missing")
    put("data832_raw", "v3/only.h5/inner", b"1")  # the check copy is a folder, not a file
    verdict = verify_copy(hook, entry("alcf832_raw", "v3/only.h5", "data832_raw"))
    assert verdict.action == "keep" and verdict.reason.startswith("check copy differs")


def test_batches_are_per_endpoint_and_bounded():
    plan = Plan()
    for i in range(5):
        for endpoint in ("alcf832_raw", "spot832"):
            e = entry(endpoint, f"f{i}", "data832_raw")
            plan.deletable[(endpoint, e.path)] = [e]
            plan.bytes[(endpoint, e.path)] = 1
    batches = make_batches(plan, 2)
    assert [(b["endpoint"], len(b["paths"])) for b in batches] == [
        ("alcf832_raw", 2),
        ("alcf832_raw", 2),
        ("alcf832_raw", 1),
        ("spot832", 2),
        ("spot832", 2),
        ("spot832", 1),
    ]
    assert sum(len(b["keys"]) for b in batches) == 10


def test_parse_as_of():
    assert parse_as_of(None) is None and parse_as_of("") is None
    assert parse_as_of("2026-12-02") == datetime(2026, 12, 2, tzinfo=UTC)
    assert parse_as_of("2026-12-02T01:00:00+01:00") == datetime(2026, 12, 2, tzinfo=UTC)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_as_of("next tuesday")


def test_a_loop_of_checks_never_deletes_every_copy(local_endpoints):
    """data832:raw/x checked against data832_raw:x is refused at scheduling; here two places check each
    other through different endpoint names of one storage, and a chain ends at a survivor."""
    from include.pruning import keep_copies_that_check_each_other

    loop_a = entry("alcf832_raw", "f/loop.h5", "nersc832_alsdev_pscratch_raw")
    loop_b = entry("nersc832_alsdev_pscratch_raw", "f/loop.h5", "alcf832_raw")
    chain_a = entry("alcf832_raw", "f/chain.h5", "data832_raw")  # its check copy goes too, but ...
    chain_b = entry("data832", "raw/f/chain.h5", "nersc832")  # ... that one's check (nersc832) survives
    plan = Plan()
    for item in (loop_a, loop_b, chain_a, chain_b):
        plan.deletable[(item.endpoint, item.path)] = [item]
        plan.bytes[(item.endpoint, item.path)] = 1
    keep_copies_that_check_each_other(plan, local_endpoints, log=__import__("logging").getLogger("test"))
    assert set(plan.deletable) == {("alcf832_raw", "f/chain.h5"), ("data832", "raw/f/chain.h5")}
    assert {key for key, _, reason in plan.kept if "loop of checks" in reason} == {loop_a.key, loop_b.key}
