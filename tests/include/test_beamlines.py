"""include/beamlines.py: the beamlines of include/config/beamlines.yaml load, and every mistake names file and key."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from include.beamlines import BEAMLINES_FILE, load_beamlines, parse_beamlines
from include.endpoints import load_endpoints
from include.errors import ConfigError
from tools.local_airflow import load_settings

SOURCE = Path("/etc/als/beamlines.yaml")
DOCUMENT = yaml.safe_load(BEAMLINES_FILE.read_text())
ENDPOINTS = set(load_endpoints("production").endpoints)


def parse(document):
    return parse_beamlines(document, source=SOURCE, endpoint_names=ENDPOINTS)


def test_the_repository_beamlines_load():
    beamlines = load_beamlines()
    ptycho, archive = beamlines["bl7012"], beamlines["bl733"]
    assert ptycho.dag_id == "bl7012_new_file"
    assert (ptycho.source_endpoint, ptycho.nersc_endpoint) == ("data7012", "nersc7012_raw")
    assert set(ptycho.pipelines) == {"ptycho"} and set(archive.pipelines) == {"scicat", "hpss_archive"}
    assert archive.pipeline("hpss_archive")["directives"]["qos"] == "xfer"
    assert archive.retention_locations() == {"data733", "bl733_cfs"}


def test_every_retention_location_has_days_in_the_settings():
    days = next(
        json.loads(v["variable_value"])
        for v in load_settings()["variables"]
        if v["variable_name"] == "als_retention_days"
    )
    for beamline in load_beamlines():
        assert beamline.retention_locations() <= set(days), beamline.key
    assert 170 <= days["bl733_cfs"] <= 190  # "prune after 6 months"


def test_the_nersc_copy_lives_on_the_nersc_file_system_and_the_archive_on_hpss():
    endpoints = load_endpoints("production")
    for beamline in load_beamlines():
        assert endpoints[beamline.nersc_endpoint].collection.storage == "nersc", beamline.key
    assert endpoints["nersc733_hpss"].collection.storage == "nersc_hpss"


def mutate(path: str, value) -> dict:
    """The repository document with ``path`` (dotted) set to ``value`` (``...`` deletes it)."""
    document = copy.deepcopy(DOCUMENT)
    *parents, last = path.split(".")
    node = document
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return document


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("beamlines.bl733.source_endpoint", "data999", "beamlines.bl733.source_endpoint: unknown endpoint 'data999'"),
        ("beamlines.bl733.nersc_endpoint", ..., "beamlines.bl733.nersc_endpoint: missing"),
        ("beamlines.bl733.nersc_endpoint", "data733", "beamlines.bl733.nersc_endpoint: must differ"),
        ("beamlines.bl733.beamline", 7.33, "beamlines.bl733.beamline: a quoted beamline number"),
        ("beamlines.bl733.colour", "red", "beamlines.bl733: unknown key(s) colour"),
        ("beamlines.bl733.pipelines.tomo", {}, "beamlines.bl733.pipelines.tomo: unknown pipeline 'tomo'"),
        (
            "beamlines.bl733.pipelines.hpss_archive.retention_location",
            ...,
            "beamlines.bl733.pipelines.hpss_archive.retention_location: missing",
        ),
        (
            "beamlines.bl733.pipelines.hpss_archive.archive_endpoint",
            "hpss",
            "beamlines.bl733.pipelines.hpss_archive.archive_endpoint: unknown endpoint 'hpss'",
        ),
        (
            "beamlines.bl7012.pipelines.ptycho.template",
            "../../etc/passwd",
            "beamlines.bl7012.pipelines.ptycho.template: no job template",
        ),
        (
            "beamlines.bl7012.pipelines.ptycho.directives",
            {"time": "1:00:00 --wrap=rm"},
            "beamlines.bl7012.pipelines.ptycho.directives: directive --time",
        ),
        ("beamlines.bl7012.pipelines.ptycho.gpus", 4, "beamlines.bl7012.pipelines.ptycho: unknown key(s) gpus"),
        ("beamlines.bl832", DOCUMENT["beamlines"]["bl7012"], "tomography.bl832: the key is also in beamlines"),
        ("tomography.bl832.colour", "red", "tomography.bl832: unknown key(s) colour"),
        ("tomography.bl832.endpoints.raw", "nowhere", "tomography.bl832.endpoints.raw: unknown endpoint 'nowhere'"),
        ("tomography.bl832.endpoints.scratch", ..., "tomography.bl832.endpoints: expected a mapping of source"),
        ("tomography.bl832.endpoints.long_term", "data832", "endpoints.long_term: 'data832' is not long_term"),
        ("tomography.bl832.retention.raw", "spot832", "tomography.bl832.retention.raw: 'spot832', but retention"),
        ("tomography.bl832.scicat.ingester", "nope", "tomography.bl832.scicat.ingester: unknown SciCat ingester"),
        ("tomography.bl832.scicat.source_folder_root", "global/raw", "scicat.source_folder_root: an absolute folder"),
        ("tomography.bl832.scicat.source_folder_root", 3, "tomography.bl832.scicat.source_folder_root: an absolute"),
        ("tomography.bl832.scicat.root", "/x", "tomography.bl832.scicat: expected a mapping with ingester"),
        ("tomography.bl832.dag_prefix", "BL", "tomography.bl832.dag_prefix: a lower-case identifier"),
        ("tomography.bl832.results.primary_site", 3, "tomography.bl832.results.primary_site: a site name or null"),
        ("beamlines.BL-9", {}, "beamlines.BL-9: beamline keys are lower-case identifiers"),
        ("beamlines", {}, "beamlines: missing or empty"),
    ],
)
def test_mistakes_name_the_file_and_the_key(path, value, message):
    with pytest.raises(ConfigError) as error:
        parse(mutate(path, value))
    assert str(error.value).startswith(f"{SOURCE}: ")
    assert message in str(error.value)


def test_a_broken_file_is_named(tmp_path):
    broken = tmp_path / "beamlines.yaml"
    broken.write_text("beamlines: [unclosed\n")
    with pytest.raises(ConfigError, match=f"{broken}:2: not valid YAML"):
        load_beamlines(broken)
    with pytest.raises(ConfigError, match=r"missing\.yaml: file not found"):
        load_beamlines(tmp_path / "missing.yaml")


def test_a_mistake_in_the_file_names_its_line(tmp_path):
    text = BEAMLINES_FILE.read_text().replace("      storage: data832\n", "      storage: data999\n")
    (tmp_path / "beamlines.yaml").write_text(text)
    line = text.splitlines().index("      storage: data999") + 1
    with pytest.raises(ConfigError) as error:
        load_beamlines(tmp_path / "beamlines.yaml")
    assert str(error.value) == (
        f"{tmp_path / 'beamlines.yaml'}:{line}: tomography.bl832.endpoints.storage: unknown endpoint 'data999' "
        "(see endpoints.yaml)"
    )


def test_a_new_beamline_is_one_entry(tmp_path):
    """A third beamline needs only configuration: it loads and builds a DAG with the chosen pipelines."""
    from dags.pipelines.beamline import make_beamline_dag

    document = copy.deepcopy(DOCUMENT)
    document["beamlines"]["bl1201"] = {
        "beamline": "12.0.1",
        "owner": "bl1201-computing",
        "source_endpoint": "data733",
        "nersc_endpoint": "nersc733_raw",
        "source_retention": "data733",
        "pipelines": {"scicat": None},
    }
    dag = make_beamline_dag(parse(document)["bl1201"])
    assert dag.dag_id == "bl1201_new_file"
    assert {t.task_id for t in dag.tasks} == {
        "plan",
        "move_to_nersc",
        "scicat_ingest",
        "finish",
    }
    assert all(t.owner == "bl1201-computing" for t in dag.tasks)
    assert all(t.retries >= 1 for t in dag.tasks if t.task_id != "plan")  # refusing conf is final


def test_832_is_a_tomography_entry_whose_dag_ids_are_the_ones_the_other_dags_name():
    """Issue 24 finding 2: 8.3.2's endpoints and DAG ids were Python constants; now they are its entry."""
    from dags.pipelines.dag_ids import DISPATCHER_DAG_ID, NEW_FILE_DAG_ID
    from include.beamlines import default_tomography
    from include.paths import parse_scan

    bl832 = default_tomography()
    assert (bl832.dispatcher_dag_id, bl832.new_file_dag_id) == (DISPATCHER_DAG_ID, NEW_FILE_DAG_ID)
    assert (bl832.settings_variable, bl832.recon_dag_id("nersc")) == ("bl832_dispatcher_settings", "bl832_nersc_recon")
    assert (bl832.source_endpoint, bl832.storage_endpoint, bl832.raw_endpoint) == ("spot832", "data832", "data832_raw")
    assert (bl832.scratch_endpoint, bl832.long_term_endpoint, bl832.primary_site) == (
        "data832_scratch",
        "nersc832",
        "nersc",  # upstream's layout for NERSC (bl832/nersc.py:469-470), docs/upstream-callers.md
    )
    assert bl832.source_folder_root == "/global/raw"  # upstream's sourceFolder root (docs/scicat.md)
    scan = parse_scan("BLS-00564_dyparkinson/a.h5")
    assert (bl832.source_path(scan), bl832.raw_folder_of(scan)) == (
        "raw/BLS-00564_dyparkinson/a.h5",
        "raw/BLS-00564_dyparkinson",
    )


def test_a_source_folder_root_is_optional_and_names_the_raw_datasets_folder():
    """scicat.source_folder_root: null or absent keeps the long-term copy's Globus path as sourceFolder."""
    from include.paths import parse_scan
    from include.plans import raw_source_folder

    scan = parse_scan("BLS-00564_dyparkinson/a.h5")
    for value in (None, ...):
        bl832 = parse(mutate("tomography.bl832.scicat.source_folder_root", value)).tomography["bl832"]
        assert bl832.source_folder_root is None
        assert raw_source_folder(bl832, scan) == "/global/cfs/cdirs/als/data_mover/8.3.2/raw/BLS-00564_dyparkinson"
    bl832 = parse(mutate("tomography.bl832.scicat.source_folder_root", "/data/raw/")).tomography["bl832"]
    assert raw_source_folder(bl832, scan) == "/data/raw/BLS-00564_dyparkinson"


def test_a_primary_site_writes_into_the_scans_folder_the_others_under_their_name():
    """Issue 22 item 1 as a setting: upstream's layout is ``results.primary_site`` (8.3.2: nersc)."""
    from include.paths import parse_scan
    from include.sites import SITES_FILE, parse_sites

    document = copy.deepcopy(DOCUMENT)
    document["tomography"]["bl832"]["results"] = {"primary_site": "nersc"}
    beamlines = parse(document)
    sites = parse_sites(
        yaml.safe_load(SITES_FILE.read_text()), source=SITES_FILE, endpoint_names=ENDPOINTS, beamlines=beamlines
    )
    scan = parse_scan("F/a.h5")
    assert str(scan.results(sites["nersc"]).tiff) == "F/reca"
    assert str(scan.results(sites["alcf"]).tiff) == "F/alcf/reca"
