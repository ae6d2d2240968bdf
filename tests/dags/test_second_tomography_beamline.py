"""A second tomography beamline is configuration plus two short DAG files (issue 24): one entry in a copy of
beamlines.yaml, one site pointing at it in a copy of sites.yaml, and a dispatcher and a recon DAG file of eight
lines each, which parse into DAGs with the beamline's ids and endpoints; 8.3.2's DAGs do not see its site."""

from __future__ import annotations

import yaml

from include.endpoints import REPO_ROOT

#: 9.9.9 reuses existing endpoints (endpoints.yaml is not copied); each differs from 8.3.2's.
BL999 = {
    "beamline": "9.9.9",
    "description": "a second microtomography beamline",
    "owner": "bl999-computing",
    "dag_prefix": "bl999",
    "endpoints": {
        "source": "data733",
        "storage": "data7012",
        "raw": "data7012",
        "scratch": "olcf832_scratch",
        "long_term": "nersc733",
    },
    "raw_folder": "incoming",
    "retention": {"source": "data733", "raw": "data7012", "scratch": "olcf"},
}
SITE = {
    "description": "ALCF for 9.9.9",
    "beamline": "bl999",
    "runner": "globus_compute",
    "compute_endpoint_id": "4b116d3c-1703-4f8f-9f6f-39921e5864df",
    "raw_endpoint": "alcf832_raw",
    "scratch_endpoint": "alcf832_scratch",
    "retention_location": "alcf",
}
DISPATCHER = '''"""Airflow DAG: the dispatcher of beamline 9.9.9 (beamlines.yaml, tomography `bl999`)."""

from __future__ import annotations

from dags.pipelines.tomography import make_dispatcher_dag
from include.beamlines import load_beamlines

dag = make_dispatcher_dag(load_beamlines().tomography_beamline("bl999"))
'''
RECON = '''"""Airflow DAGs: reconstruction at each site of beamline 9.9.9 (sites.yaml, `beamline: bl999`)."""

from __future__ import annotations

from dags.pipelines.tomography import make_recon_dags
from include.beamlines import load_beamlines

globals().update(make_recon_dags(load_beamlines().tomography_beamline("bl999")))
'''


def test_a_second_tomography_beamline_is_one_entry_and_two_short_dag_files(tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    import include.beamlines
    import include.sites
    from include.beamlines import load_beamlines
    from include.paths import parse_scan
    from include.plans import new_file_plan

    config = REPO_ROOT / "include" / "config"
    beamlines = yaml.safe_load((config / "beamlines.yaml").read_text())
    beamlines["tomography"]["bl999"] = BL999
    sites = yaml.safe_load((config / "sites.yaml").read_text())
    sites["sites"]["alcf9"] = SITE
    (tmp_path / "beamlines.yaml").write_text(yaml.safe_dump(beamlines))
    (tmp_path / "sites.yaml").write_text(yaml.safe_dump(sites))
    monkeypatch.setattr(include.beamlines, "BEAMLINES_FILE", tmp_path / "beamlines.yaml")
    monkeypatch.setattr(include.sites, "SITES_FILE", tmp_path / "sites.yaml")
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "bl999_dispatcher.py").write_text(DISPATCHER)
    (dags / "bl999_recon.py").write_text(RECON)
    assert all(len(text.splitlines()) == 8 for text in (DISPATCHER, RECON))
    (dags / "bl832_dispatcher.py").write_text((REPO_ROOT / "dags" / "bl832_dispatcher.py").read_text())

    bag = DagBag(dag_folder=str(dags))
    assert not bag.import_errors, bag.import_errors
    assert set(bag.dag_ids) == {"bl999_dispatcher", "bl999_alcf9_recon", "bl832_dispatcher"}

    dispatcher = bag.dags["bl999_dispatcher"]
    to_storage = dispatcher.get_task("new_file.spot832_to_data832")
    assert (to_storage.source_endpoint, to_storage.destination_endpoint) == ("data733", "data7012")
    assert to_storage.source_path == "{{ ti.xcom_pull(task_ids='plan', key='new_file.source_path') }}"
    to_long_term = dispatcher.get_task("new_file.data832_to_nersc832")
    assert to_long_term.destination_endpoint == "nersc733"
    home = dispatcher.get_task("alcf9.copy_tiff")
    assert (home.source_endpoint, home.destination_endpoint) == ("alcf832_scratch", "olcf832_scratch")
    assert {group for group in dispatcher.task_group.children} == {"plan", "new_file", "alcf9", "report"}
    stage = bag.dags["bl999_alcf9_recon"].get_task("stage_raw")
    assert (stage.source_endpoint, stage.destination_endpoint) == ("data7012", "alcf832_raw")
    assert "bl999_dispatcher_settings" in dispatcher.doc_md

    plan = new_file_plan(parse_scan("f/a.h5"), offsite=True, beamline=load_beamlines().tomography_beamline("bl999"))
    assert plan.source_path == "incoming/f/a.h5"
    assert {(d.endpoint, d.check_endpoint, d.location) for d in plan.deletions} == {
        ("data733", "data7012", "data733"),
        ("data7012", "nersc733", "data7012"),
    }
    assert plan.scicat_source_folder.endswith("/7.3.3/incoming/f")

    bl832 = bag.dags["bl832_dispatcher"]
    assert "alcf9" not in bl832.task_group.children and "alcf" in bl832.task_group.children
    assert bl832.get_task("new_file.spot832_to_data832").source_endpoint == "spot832"
