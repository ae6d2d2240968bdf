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
    assert (ptycho.dag_id, ptycho.source_endpoint, ptycho.nersc_endpoint) == (
        "bl7012_new_file",
        "data7012",
        "nersc7012_raw",
    )
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
        ("beamlines.bl832", {"beamline": "8.3.2"}, "beamlines.bl832: 8.3.2 has its own DAGs"),
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
    with pytest.raises(ConfigError, match=f"{broken}: not valid YAML"):
        load_beamlines(broken)
    with pytest.raises(ConfigError, match="beamlines file not found"):
        load_beamlines(tmp_path / "missing.yaml")


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
