"""Issue 26 finding 1, the core: export control recorded per scan, signed, never downgraded; where on site is;
the watcher's folder list; private results (include/export_control.py, compute_functions/permissions.py)."""

from __future__ import annotations

import json
import stat

import pytest

from include.export_control import (
    FOLDERS_VARIABLE,
    RECORD_PREFIX,
    find_controlled,
    folder_policy,
    is_on_site,
    mark_controlled,
    record_key,
    update_folders,
)
from include.paths import Scan

NASTY = "20230224_132553_sea shell; touch canary_a $(touch canary_b) `touch canary_c` 'q\" x.h5"


class Store:
    """An in-memory Variable store (the same four calls as Airflow's)."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def get(self, key):
        return self.data.get(key)

    def set(self, key, value):
        self.data[key] = value

    def delete(self, key):
        self.data.pop(key, None)

    def keys(self, prefix):
        return sorted(k for k in self.data if k.startswith(prefix))


def test_i26_finding_1_every_path_that_names_a_scan_finds_its_record():
    store, scan = Store(), Scan("BLS-00001_tester", NASTY)
    record = mark_controlled(scan, source="test", store=store)
    assert record.key.startswith(RECORD_PREFIX) and record.problem is None
    dataset = scan.dataset
    for named in (
        f"BLS-00001_tester/{NASTY}",  # the relative scan
        f"/global/raw/BLS-00001_tester/{NASTY}",  # the beamline's path
        f"raw/BLS-00001_tester/{NASTY}",  # nersc832 / spot832 layout
        f"/eagle/IRIProd/ALS/data/raw/BLS-00001_tester/{NASTY}",  # a posix path at a site
        f"BLS-00001_tester/alcf/rec{dataset}",  # results
        f"/x/y/BLS-00001_tester/nersc/rec{dataset}.zarr",
        f"BLS-00001_tester/rec{dataset}",  # the primary site's results: upstream's layout, no <site>/ (issue 22.1)
        f"/pscratch/sd/a/alsdev/8.3.2/scratch/BLS-00001_tester/rec{dataset}.zarr/0/0.0.0",
        {"values": [f"BLS-00001_tester/local/rec{dataset}.zarr/preview.png"]},
    ):
        assert [r.key for r in find_controlled(named, store=store)] == [record.key], named
    assert find_controlled("BLS-00001_tester/20230224_132553_other.h5", store=store) == []
    assert find_controlled("BLS-00002_tester/" + NASTY, store=store) == []


def test_i26_finding_1_a_record_is_never_downgraded_and_an_edit_never_releases():
    store, scan = Store(), Scan("BLS-00001_tester", "20230224_132553_a.h5")
    first = mark_controlled(scan, source="run one", store=store)
    again = mark_controlled(scan, source="run two", store=store)
    assert again.source == "run one"  # the first record stays
    key = record_key(scan.folder, scan.dataset)
    edited = json.loads(store.data[key])
    edited["export_controlled"] = False  # a UI user "downgrades" the scan
    store.data[key] = json.dumps(edited)
    [found] = find_controlled(str(scan), store=store)
    assert found.problem and "signature" in found.problem  # still export-controlled, and says why
    store.data[key] = "not json"
    [found] = find_controlled(str(scan), store=store)
    assert found.problem == "unreadable record"
    assert first.describe().startswith(f"Variable {key}")


def test_i26_finding_1_on_site_is_the_beamlines_collections_only():
    assert all(is_on_site(n) for n in ("spot832", "data832", "data832_raw", "data832_scratch"))
    for name in ("nersc832", "nersc832_alsdev_raw", "alcf832_raw", "olcf832_scratch", "nersc_hpss", "unknown"):
        assert not is_on_site(name), name


def test_i26_finding_1_the_watchers_folder_list_holds_what_it_does_not_know():
    store = Store()
    assert folder_policy(store=store).status("BLS-00001_x") is None  # nothing configured: held
    policy = update_folders(control=["BLS-00001_*"], release=["ALS-*"], store=store)
    assert policy.status("BLS-00001_x") is True and policy.status("ALS-12345_y") is False
    assert policy.status("BLS-00002_x") is None
    document = json.loads(store.data[FOLDERS_VARIABLE])
    document["released"].append("BLS-00002_*")  # a UI user releases a folder by hand: voids the list
    store.data[FOLDERS_VARIABLE] = json.dumps(document)
    policy = folder_policy(store=store)
    assert policy.status("BLS-00002_x") is None and policy.status("ALS-12345_y") is None
    assert policy.status("BLS-00001_x") is True and "signature" in policy.problems[0]
    document["controlled"].append("BLS-00003_*")  # adding a controlled folder needs no key
    document["released"].remove("BLS-00002_*")
    store.data[FOLDERS_VARIABLE] = json.dumps(document)
    assert folder_policy(store=store).status("ALS-12345_y") is False
    assert folder_policy(store=store).status("BLS-00003_y") is True


@pytest.mark.parametrize("private", [False, True])
def test_i26_finding_1_export_controlled_results_are_2770_660(tmp_path, private):
    from compute_functions.permissions import makedirs, private_modes, share_tree

    tree = tmp_path / "BLS-00001_x" / "local" / "recA"
    with private_modes(private):
        makedirs(tree / "sub")
        (tree / "sub" / "a.tiff").write_bytes(b"x")
        share_tree(tree)
    dirs, files = (0o2770, 0o660) if private else (0o2775, 0o664)
    for folder in (tmp_path / "BLS-00001_x", tmp_path / "BLS-00001_x" / "local", tree, tree / "sub"):
        assert stat.S_IMODE(folder.stat().st_mode) == dirs, folder
    assert stat.S_IMODE((tree / "sub" / "a.tiff").stat().st_mode) == files
    # a later share without the flag never widens a private tree
    share_tree(tree)
    assert stat.S_IMODE(tree.stat().st_mode) == dirs
