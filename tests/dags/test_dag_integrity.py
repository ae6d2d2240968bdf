"""Every DAG file imports cleanly, fast, without heavy libraries, and declares owner, retries, tags and docs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from include.endpoints import REPO_ROOT

DAG_FILES = sorted(p for p in (REPO_ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
#: Libraries that make a DAG file slow to parse (Airflow re-parses it in every task process).
HEAVY_MODULES = (
    "globus_sdk",
    "globus_compute_sdk",
    "sfapi_client",
    "pyscicat",
    "numpy",
    "h5py",
    "zarr",
    "ome_zarr",
    "tifffile",
    "scipy",
    "finufft",
    "algotom",
    "asyncssh",
    "paramiko",
)


#: Tasks that only check input or summarise: retrying them cannot help, so they fail at once.
NO_RETRY_TASKS = {"plan", "report"}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert dagbag.dag_ids, "no DAG found"


def test_every_dag_declares_owner_retries_tags_and_docs(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id}: no tags"
        assert dag.doc_md and len(dag.doc_md) > 80, f"{dag_id}: no doc_md"
        assert dag.description and len(dag.description) > 20, f"{dag_id}: no description (the DAG list shows it)"
        assert dag.default_args.get("retries", 0) >= 1, f"{dag_id}: default_args declare no retries"
        for task in dag.tasks:
            assert task.owner not in (None, "", "airflow"), f"{dag_id}.{task.task_id}: no owner"
            # deferrable tasks need retries >= 1 (apache/airflow#72716); only input checks may fail at once
            if task.retries < 1:
                assert not getattr(task, "deferrable", False), f"{dag_id}.{task.task_id}: deferrable, retries < 1"
                assert task.task_id.rsplit(".", 1)[-1] in NO_RETRY_TASKS, f"{dag_id}.{task.task_id}: retries < 1"


def test_dags_that_take_conf_refuse_unknown_keys(dagbag):
    for dag_id, dag in dagbag.dags.items():
        for name, param in dag.params.items():
            assert param.schema.get("type"), f"{dag_id}: param {name} has no JSON-schema type"
            assert param.description or param.schema.get("description_md"), f"{dag_id}: param {name}: no help"


def test_i23_finding_7_fields_with_defaults_are_not_marked_required(dagbag):
    """The form puts the red "required" asterisk on a field whose type does not admit null (Airflow 3 UI); a
    field with a default is filled in already, so it admits null there, and the schema still refuses null."""
    import copy

    from airflow.sdk.exceptions import ParamValidationError

    for dag_id, dag in dagbag.dags.items():
        for name, param in dag.params.items():
            kind = param.schema["type"]
            if not param.has_value or param.value is None:  # no default: required, or null means "not given"
                continue
            assert isinstance(kind, list) and "null" in kind, f"{dag_id}.{name}: marked required in the form"
            probe = copy.deepcopy(param)
            assert probe.resolve() == param.value
            with pytest.raises(ParamValidationError):
                probe.resolve(None)


def test_i23_finding_7_the_recon_form_lists_every_option_without_a_repo_path(dagbag):
    """The recon field's help (markdown; the form shows it only without a plain description) names every option
    with its default, instead of pointing into the repository."""
    from dags.pipelines.params import RECON_SCHEMA

    recon = [(dag_id, dag.params.get_param("recon")) for dag_id, dag in dagbag.dags.items() if "recon" in dag.params]
    assert len(recon) >= 2
    for dag_id, param in recon:
        help_md = param.schema["description_md"]
        assert param.description is None, dag_id
        assert "docs/" not in help_md and ".md" not in help_md, dag_id
        for key in RECON_SCHEMA["properties"]:
            assert f"- `{key}`" in help_md, f"{dag_id}: {key}"
        assert "- `binning` (integer 1 to 8, default 1)" in help_md


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_no_heavy_module(dag_file: Path):
    """Import the file in a fresh interpreter: no SDK or science library loaded (parse times are measured
    in benchmarks/bench_dag_parse.py, not asserted here)."""
    probe = f"""
import sys, time, runpy
start = time.perf_counter()
runpy.run_path({str(dag_file)!r})
elapsed = time.perf_counter() - start
heavy = sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)
print(f"{{elapsed:.3f}} {{','.join(heavy)}}")
"""
    # Airflow itself is imported first so only the DAG file's own cost is measured.
    warm = "import airflow.sdk, airflow.triggers.base, yaml\n"
    out = subprocess.run(
        [sys.executable, "-c", warm + probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    heavy = out[1] if len(out) > 1 else ""
    assert heavy == "", f"{dag_file.name} imports heavy modules at top level: {heavy}"
