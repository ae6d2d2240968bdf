"""The plans of every pipeline (include/plans.py), the Site model and the runtime settings, without Airflow."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from include.beamlines import load_beamlines
from include.errors import ConfigError
from include.manifests import DeletionRequest
from include.paths import EndpointPath, parse_scan
from include.plans import (
    TO_DATA832,
    TO_NERSC,
    Plan,
    ResultsError,
    beamline_plan,
    due_outputs,
    due_requests,
    new_file_plan,
    site_plan,
    verify_results,
)
from include.runtime import load_runtime
from include.sites import SITES_FILE, load_endpoints, load_sites, parse_sites

SCAN = parse_scan("/global/raw/BLS-00564_dyparkinson/20230224_132553_sea_shell.h5")
RESULTS = "BLS-00564_dyparkinson/{site}/rec20230224_132553_sea_shell"
#: NERSC is 8.3.2's primary site: upstream's layout, no <site>/ level (bl832/nersc.py:469-470).
PRIMARY_RESULTS = "BLS-00564_dyparkinson/rec20230224_132553_sea_shell"


def requests(plan: Plan) -> set[tuple[str, str, str, str]]:
    return {(d.endpoint, d.path, d.check_endpoint, d.location) for d in plan.deletions}


def test_every_site_is_one_model_with_its_runner_and_no_name_special_cased():
    sites = load_sites()
    assert {s.name: s.runner for s in sites.enabled()} == {
        "alcf": "globus_compute",
        "nersc": "sfapi",
        "olcf": "globus_compute",
        "local": "globus_compute",
    }
    nersc, local = sites["nersc"], sites["local"]
    assert nersc.needs_nersc_copy and nersc.offsite and nersc.stages_raw
    assert nersc.result_destinations() == ["data832_scratch", "nersc832_alsdev_scratch"]
    assert not local.offsite and not local.stages_raw and local.result_destinations() == []


def test_the_results_layout_is_one_typed_value():
    results = SCAN.results(load_sites()["alcf"])
    assert str(results.tiff) == RESULTS.format(site="alcf")
    assert str(results.zarr) == RESULTS.format(site="alcf") + ".zarr"
    assert str(results.preview) == RESULTS.format(site="alcf") + ".zarr/preview.png"


def _marker(folder: str) -> str:
    parent, _, name = folder.rpartition("/")
    return f"{parent}/.{name}.run-result"


def test_a_compute_site_plan_stages_reconstructs_and_records_every_copy_it_may_leave():
    plan = site_plan(load_sites()["alcf"], SCAN, {"engine": "nufft"})
    tiff = RESULTS.format(site="alcf")
    assert requests(plan) == {
        ("alcf832_raw", str(SCAN.relative_path), "data832_raw", "alcf"),
        ("alcf832_scratch", tiff, "data832_scratch", "alcf"),
        ("alcf832_scratch", tiff + ".zarr", "data832_scratch", "alcf"),
        # ALCF results brought home go once the long-term raw copy exists (regenerate_from_raw, retention.yaml)
        ("data832_scratch", tiff, "nersc832", "data832_scratch"),
        ("data832_scratch", tiff + ".zarr", "nersc832", "data832_scratch"),
        # the run-once markers beside the results at ALCF go with them (issue 21 finding 12)
        ("alcf832_scratch", _marker(tiff), "nersc832", "alcf"),
        ("alcf832_scratch", _marker(tiff + ".zarr"), "nersc832", "alcf"),
    }
    assert {d.check_path for d in plan.deletions if d.check_endpoint == "nersc832"} == {f"raw/{SCAN.relative_path}"}
    assert all(d.after is None for d in plan.deletions)  # recorded whatever the steps did
    assert plan.steps["reconstruct"]["options"] == {"engine": "nufft"}  # the conf, unchanged
    assert plan.steps["reconstruct"]["scan_path"].endswith("/data/raw/" + str(SCAN.relative_path))
    assert [o.where.endpoint for o in plan.outputs] == ["data832_scratch", "data832_scratch"]


def test_the_sfapi_site_plan_has_two_jobs_and_checks_home_results_against_the_archive_copy():
    plan = site_plan(load_sites()["nersc"], SCAN, {"rows": "0:4", "ring_removal": False})
    tiff = PRIMARY_RESULTS
    assert plan.steps["job_names"]["reconstruct"] == "tomo_recon_BLS-00564_dyparkinson_20230224_132553_sea_shell"
    assert plan.steps["reconstruct"]["recon_args"] == ["--options", '{"ring_removal": false, "rows": "0:4"}']
    assert plan.steps["multiscale"]["zarr"].endswith(tiff + ".zarr")
    assert ("data832_scratch", tiff, "nersc832_alsdev_scratch", "data832_scratch") in requests(plan)
    # pscratch results check against the long-term archive copy, not data832_scratch (which goes first)
    assert ("nersc832_alsdev_pscratch_scratch", tiff, "nersc832_alsdev_scratch", "nersc_pscratch") in requests(plan)
    assert ("nersc832_alsdev_pscratch_raw", str(SCAN.relative_path), "nersc832_alsdev_raw", "nersc_pscratch") in (
        requests(plan)
    )


def test_new_file_plan_records_each_copy_only_once_its_step_succeeded():
    plan = new_file_plan(SCAN, offsite=True)
    assert due_requests(plan, set()) == []
    assert due_requests(plan, {TO_DATA832}) == [
        DeletionRequest("spot832", f"raw/{SCAN.relative_path}", "data832", "spot832", after=TO_DATA832)
    ]
    assert len(due_requests(plan, {TO_DATA832, TO_NERSC})) == 2
    assert due_outputs(plan, {TO_DATA832}) == [EndpointPath("data832_raw", str(SCAN.relative_path))]


def test_an_export_controlled_scan_plans_no_offsite_step_and_no_data832_deletion():
    plan = new_file_plan(SCAN, offsite=False)
    assert set(plan.skip_steps) == {TO_NERSC, "scicat_ingest"}
    assert [d.endpoint for d in plan.deletions] == ["spot832"]  # data832 holds the only other copy


def test_the_beamline_plans_check_what_their_jobs_wrote_and_refuse_paths_hsi_would_split():
    beamlines = load_beamlines()
    scan = parse_scan("ALS-07012_x/20260301_101500_cell.h5")
    ptycho = beamline_plan(beamlines["bl7012"], scan, hpss_mode="hsi")
    assert ptycho.steps["job_names"]["ptycho"] == "ptycho_ALS-07012_x_20260301_101500_cell"
    assert list(ptycho.checks) == ["check_ptycho_results"]
    archive = beamline_plan(beamlines["bl733"], parse_scan("f/a.h5"), hpss_mode="hsi")
    assert archive.steps["hpss_archive"]["mode"] == "hsi"
    with pytest.raises(ValueError, match="hsi would split"):
        beamline_plan(beamlines["bl733"], parse_scan("f/a b.h5"), hpss_mode="hsi")
    assert beamline_plan(beamlines["bl733"], parse_scan("f/a b.h5"), hpss_mode="copy").pipeline == "bl733"


def test_i22_item_4_upstream_733_files_of_several_nested_folders_each_keep_their_path_and_folder_record():
    """Issue 22 item 4: upstream 7.3.3 lists files of several folders (bl733/move.py:95-133); each is copied to the
    same relative path (not their common parent folder) and its SciCat record names its own folder's copy."""
    from include.paths import parse_files

    beamline, nersc = load_beamlines()["bl733"], load_endpoints()["nersc733_raw"]
    files = ["/2025/03/AgB/AgB_00001.txt", "/2025/03/AgB/AgB_00001.edf", "/2025/04/run2/x/S_00002.edf"]
    plan = beamline_plan(beamline, parse_files(files, suffixes=beamline.file_suffixes), hpss_mode="hsi")
    relatives = tuple(f.lstrip("/") for f in files)
    assert plan.scans == relatives
    assert [str(o.where.path) for o in plan.outputs if o.where.endpoint == "nersc733_raw"] == list(relatives)
    assert plan.scicat_source_folders == (
        nersc.globus_path("2025/03/AgB"),
        nersc.globus_path("2025/03/AgB"),
        nersc.globus_path("2025/04/run2/x"),
    )
    assert plan.steps["hpss_archive"]["destinations"][2].endswith("/raw/2025/04/run2/x/S_00002.edf")


def test_i22_item_4_a_nested_7012_cxi_lands_at_its_relative_path_and_its_results_beside_it():
    """Issue 22 item 4: 7.0.1.2's files are nested .cxi (bl7012/move_recon.py:271)."""
    from include.paths import parse_files

    beamline, endpoints = load_beamlines()["bl7012"], load_endpoints()
    cxi = "2023/02/230216/NS_230216033_ccdframes_0_0.cxi"
    plan = beamline_plan(beamline, parse_files(cxi, suffixes=beamline.file_suffixes), hpss_mode="hsi")
    results = "2023/02/230216/ptycho/recNS_230216033_ccdframes_0_0"
    assert [o.where for o in plan.outputs] == [
        EndpointPath("nersc7012_raw", cxi),
        EndpointPath("nersc7012_scratch", results),
    ]
    assert plan.steps["ptycho"]["scans"] == [str(endpoints["nersc7012_raw"].posix_path(cxi))]
    assert plan.steps["ptycho"]["out_dirs"] == [str(endpoints["nersc7012_scratch"].posix_path(results))]
    assert [(d.endpoint, d.path, d.check_endpoint) for d in plan.deletions] == [("data7012", cxi, "nersc7012_raw")]


def test_a_beamline_plan_of_several_files_moves_archives_and_records_each():
    """Issue 16 finding 8: a run of 7.3.3 is a list of files (upstream); each gets its copies and deletions."""
    beamline = load_beamlines()["bl733"]
    files = ["f/a.h5", "f/b.h5", "f/c.h5"]
    plan = beamline_plan(beamline, [parse_scan(f) for f in files], hpss_mode="hsi")
    assert plan.scans == tuple(files) and plan.scan == "f/a.h5"
    assert plan.steps["job_names"]["hpss_archive"] == "hpss_archive_f_a_and_2_more"
    values = plan.steps["hpss_archive"]
    assert [v.rsplit("/", 2)[-2:] for v in values["sources"]] == [["f", n] for n in ("a.h5", "b.h5", "c.h5")]
    assert len(values["destinations"]) == 3 and values["mode"] == "hsi"
    assert [(c.where.endpoint, str(c.where.path)) for c in plan.checks["verify_archive"]] == [
        ("nersc733_hpss", f) for f in files
    ]
    assert sorted((d.endpoint, d.path, d.after) for d in plan.deletions) == sorted(
        [("data733", f, "move_to_nersc") for f in files] + [("nersc733_raw", f, "verify_archive") for f in files]
    )
    assert plan.scicat_source_folders == (load_endpoints()["nersc733_raw"].globus_path("f"),) * 3
    with pytest.raises(ValueError, match=r"f/a\.h5 more than once"):
        beamline_plan(beamline, [parse_scan("f/a.h5"), parse_scan("f/a.h5")], hpss_mode="copy")
    with pytest.raises(ValueError, match="empty list"):
        beamline_plan(beamline, [], hpss_mode="copy")
    # a beamline that catalogues nothing takes files of several folders
    ptycho = beamline_plan(load_beamlines()["bl7012"], [parse_scan("f/a.h5"), parse_scan("g/a.h5")], hpss_mode="hsi")
    assert len(ptycho.steps["ptycho"]["scans"]) == len(ptycho.steps["ptycho"]["out_dirs"]) == 2


class Listing:
    """The calls results checking makes, over a dict of {(endpoint, path): entry or [children]} (files of 1 byte)."""

    def __init__(self, tree: dict):
        self.tree = tree

    def stat(self, where: EndpointPath):
        found = self.tree.get((where.endpoint, str(where.path)))
        return {"type": "dir"} if isinstance(found, list) else found

    def ls(self, where: EndpointPath):
        return [{"name": name, "type": "file", "size": 1} for name in self.tree[(where.endpoint, str(where.path))]]

    def listdir(self, where: EndpointPath):
        if (where.endpoint, str(where.path)) not in self.tree:
            raise FileNotFoundError(str(where))
        return self.ls(where)


def test_results_checks_compare_the_tiff_count_with_what_the_reconstruction_reported():
    plan = site_plan(load_sites()["local"], SCAN, {})
    checks = plan.checks["check_results"]
    tiff, zarr = RESULTS.format(site="local"), RESULTS.format(site="local") + ".zarr"
    tiffs = ["a_00000.tiff", "a_00001.tiff", "results-manifest-2-files-2-bytes.json"]
    tree = {("data832_scratch", tiff): tiffs, ("data832_scratch", zarr): ["results-manifest-0-files-0-bytes.json"]}
    assert len(verify_results(Listing(tree), checks, {"reconstruct": 2})) == 3
    with pytest.raises(ResultsError, match="holds 2 TIFFs, the reconstruction wrote 3"):
        verify_results(Listing(tree), checks, {"reconstruct": 3})
    with pytest.raises(ResultsError, match="missing"):
        one = ["a_00000.tiff", "results-manifest-1-files-1-bytes.json"]
        verify_results(Listing({("data832_scratch", tiff): one}), checks, {"reconstruct": 1})


def test_results_checks_refuse_a_stack_mixed_with_an_earlier_runs_files():
    """Issue 13 finding 5: the check accepted any folder holding at least one TIFF."""
    plan = site_plan(load_sites()["nersc"], SCAN, {})
    checks = plan.checks["check_results"]
    tiff, zarr = PRIMARY_RESULTS, PRIMARY_RESULTS + ".zarr"
    mixed = ["a_00000.tiff", "a_00001.tiff", "a_00002.tiff", "results-manifest-2-files-2-bytes.json"]
    tree = {("data832_scratch", tiff): mixed, ("data832_scratch", zarr): ["results-manifest-0-files-0-bytes.json"]}
    with pytest.raises(ResultsError, match=r"3 files, 3 bytes where results-manifest-2-files-2-bytes\.json counts 2"):
        verify_results(Listing(tree), checks, {})
    tree[("data832_scratch", tiff)] = mixed[:2] + mixed[3:]
    assert "complete: 2 files" in verify_results(Listing(tree), checks, {})[1]


def test_an_archive_check_compares_sizes():
    plan = beamline_plan(load_beamlines()["bl733"], parse_scan("f/a.h5"), hpss_mode="copy")
    checks = plan.checks["verify_archive"]
    same = {("nersc733_hpss", "f/a.h5"): {"size": 5}, ("nersc733_raw", "f/a.h5"): {"size": 5}}
    assert "same as" in verify_results(Listing(same), checks, {})[0]
    with pytest.raises(ResultsError, match="4 bytes"):
        verify_results(Listing({**same, ("nersc733_hpss", "f/a.h5"): {"size": 4}}), checks, {})


def site_document() -> dict:
    return yaml.safe_load(Path(SITES_FILE).read_text())


def test_a_runner_needs_its_own_settings_and_nothing_else():
    names = set(load_endpoints("production").endpoints)
    document = copy.deepcopy(site_document())
    del document["sites"]["alcf"]["compute_endpoint_id"]
    with pytest.raises(ConfigError, match=r"sites.alcf.compute_endpoint_id: missing"):
        parse_sites(document, source=SITES_FILE, endpoint_names=names)
    document = copy.deepcopy(site_document())
    document["sites"]["nersc"]["compute_endpoint_id"] = "4b116d3c-1703-4f8f-9f6f-39921e5864df"
    with pytest.raises(ConfigError, match=r"sites\.nersc\.compute_endpoint_id: a key of runner globus_compute, not"):
        parse_sites(document, source=SITES_FILE, endpoint_names=names)
    document = copy.deepcopy(site_document())
    document["sites"]["nersc"]["archive_endpoint"] = "nowhere"
    with pytest.raises(ConfigError, match=r"sites.nersc.archive_endpoint: unknown endpoint 'nowhere'"):
        parse_sites(document, source=SITES_FILE, endpoint_names=names)


def test_runtime_settings_have_one_home_per_profile(tmp_path):
    assert load_runtime("production").poll("sfapi") == 30 and load_runtime("production").hpss_mode == "hsi"
    assert load_runtime("local").poll("transfer") == 1 and load_runtime("local").hpss_mode == "copy"
    bad = tmp_path / "runtime.yaml"
    bad.write_text("production:\n  poll_seconds: {transfer: 1, compute: 1, sfapi: 1, hpss: 1}\n  hpss_mode: tape\n")
    with pytest.raises(ConfigError, match="hpss_mode: one of hsi, copy"):
        load_runtime("production", path=bad)
    bad.write_text("production:\n  poll_seconds: {transfer: 0, compute: 1, sfapi: 1, hpss: 1}\n  hpss_mode: hsi\n")
    with pytest.raises(ConfigError, match=r"poll_seconds\.transfer"):
        load_runtime("production", path=bad)


def test_i26_finding_3_two_files_of_one_dataset_in_a_ptychography_run_are_refused():
    """a.h5 and a.edf of one folder would write the same ptychography results folder rec<a> (no beamline is
    configured so today, bl733 takes .edf but has no ptychography: the plan refuses it should one be)."""
    import dataclasses

    beamline = dataclasses.replace(load_beamlines()["bl7012"], file_suffixes=(".h5", ".edf"))
    scans = [parse_scan("ALS-07012_x/a.h5", suffixes=beamline.file_suffixes)]
    scans.append(parse_scan("ALS-07012_x/a.edf", suffixes=beamline.file_suffixes))
    with pytest.raises(ValueError, match="ALS-07012_x/reca"):
        beamline_plan(beamline, scans, hpss_mode="copy")
    assert beamline_plan(beamline, scans[:1], hpss_mode="copy").steps["ptycho"]["out_dirs"][0].endswith("/reca")


def test_a_plan_crosses_xcom_as_one_json_form_and_comes_back_typed():
    """Issue 24 finding 5: plans were dicts with f-string keys; now each kind is a dataclass with one serialised
    form (what the ``plan`` task pushes, a field per XCom) that :meth:`Plan.from_dict` reads back typed."""
    import json

    from include.plans import Check, Output

    plans = [
        new_file_plan(SCAN, offsite=True),
        *(site_plan(site, SCAN, {"rows": "0:4"}) for site in load_sites().enabled()),
        *(beamline_plan(b, parse_scan("f/a.h5"), hpss_mode="copy") for b in load_beamlines()),
    ]
    for plan in plans:
        data = json.loads(json.dumps(plan.to_dict()))  # plain JSON, as XCom keeps it
        back = Plan.from_dict(data)
        assert (back.pipeline, back.scan, back.deletions, back.outputs) == (
            plan.pipeline,
            plan.scan,
            plan.deletions,
            plan.outputs,
        )
        assert back.checks == plan.checks and back.skip_steps == plan.skip_steps
        assert all(isinstance(o, Output) for o in back.outputs)
        assert all(isinstance(c, Check) for checks in back.checks.values() for c in checks)
        assert {key: back.steps[key] for key in plan.steps} == json.loads(json.dumps(dict(plan.steps)))
    nersc = site_plan(load_sites()["nersc"], SCAN, {}).to_dict()
    assert {"reconstruct", "multiscale", "job_names", "job_logs", "tiff_path", "recon"} <= set(nersc)
    assert not [key for key in nersc if key.endswith(("_job_values", "_job_name"))]
