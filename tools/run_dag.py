"""Run one DAG end to end on the local profile: ``python -m tools.run_dag DAG_ID [--conf JSON]``.

Starts the local facility (or, with ``--facility-url`` / ``FACILITY_URL``, uses one already running, e.g.
``make facility``, so faults can be injected from outside), prepares a local Airflow (SQLite under
``.airflow/``) from airflow_settings.yaml, runs the DAG with ``dag.test()``, prints ``output: PATH`` for
every output the run published (XCom key ``outputs``: a list of ``{"endpoint", "path"}``), stops the
facility it started, and exits non-zero unless the run succeeded (a failed run's last line: the first
failed task and its own error). ``make dags-test`` and ``make demo`` use it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from facility.process import Facility
from include.endpoints import REPO_ROOT, default_facility_root, load_endpoints
from include.paths import EndpointPath

OUTPUTS_KEY = "outputs"


def parse_conf(text: str) -> dict[str, Any]:
    try:
        conf = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--conf is not valid JSON: {exc}") from None
    if not isinstance(conf, dict):
        raise SystemExit("--conf must be a JSON object")
    return conf


def run_outputs(dag_id: str, run_id: str) -> list[EndpointPath]:
    """Every output the run's tasks published under XCom key ``outputs``, in task order."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(XComModel.task_id, XComModel.value)
            .where(XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.key == OUTPUTS_KEY)
            .order_by(XComModel.timestamp)
        ).all()
    outputs: list[EndpointPath] = []
    for _task_id, value in rows:
        items = json.loads(value) if isinstance(value, str) else value
        outputs.extend(EndpointPath.from_dict(item) for item in items or [])
    return outputs


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def logs_to(log_file: Path | None) -> Iterator[None]:
    """Send everything written to stdout and stderr (Airflow's task logs, subprocesses included) to
    ``log_file`` while the block runs; nothing is redirected when it is None."""
    if log_file is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log_file.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def describe(path: Path) -> tuple[str, str]:
    """What an output is and how to open it (docs/viewing.md)."""
    if path.suffix == ".zarr":
        levels = len([p for p in path.iterdir() if p.name.isdigit()]) if path.is_dir() else 0
        return f"OME-Zarr, {levels} levels", "napari --plugin napari-ome-zarr <path>"
    if path.is_dir():
        tiffs = len(list(path.glob("*.tif*")))
        return f"TIFF stack, {tiffs} slices", "Fiji: File > Import > Image Sequence; notebooks/view_results.ipynb"
    if path.suffix == ".h5":
        return "scan (HDF5)", "h5py, HDFView"
    return "file", ""


def summary(dag_run: Any, outputs: list[Path], log_file: Path | None) -> list[str]:
    """A short table: the run's tasks by state, then each output, what it is and how to open it."""
    states: dict[str, list[str]] = {}
    for ti in dag_run.get_task_instances():
        states.setdefault(str(ti.state), []).append(ti.task_id)
    counts = ", ".join(f"{len(ids)} {state}" for state, ids in sorted(states.items()))
    lines = [f"{dag_run.dag_id} {dag_run.run_id}: {dag_run.state} ({counts})"]
    for state in ("failed", "upstream_failed"):
        if states.get(state):
            lines.append(f"  {state}: {', '.join(sorted(states[state]))}")
    if log_file is not None:
        lines.append(f"  full log: {log_file}")
    rows = [(*describe(path), str(path)) for path in outputs]
    width = max((len(what) for what, _, _ in rows), default=0)
    for what, how, path in rows:
        lines.append(f"  {what:<{width}}  {path}" + (f"\n  {'':<{width}}  open: {how}" if how else ""))
    return lines


@contextlib.contextmanager
def task_errors() -> Iterator[list[tuple[str, str]]]:
    """``(task_id, first line of its error)`` of each try that failed while ``dag.test()`` runs, in order.

    ``dag.test()`` logs a task's exception and keeps only its state; this keeps the message too (it wraps
    ``airflow.sdk.definitions.dag._run_task``, which ``dag.test()`` calls per try), so the run can end on it.
    """
    from airflow.sdk.definitions import dag as dag_module

    original, errors = dag_module._run_task, []

    def run_task(*, ti: Any, task: Any, **kwargs: Any) -> Any:
        result = original(ti=ti, task=task, **kwargs)
        error = getattr(result, "error", None)
        if error is not None and ti.state in ("failed", "up_for_retry"):  # a str enum: compare, never str()
            text = (str(error).strip() or type(error).__name__).splitlines()[0]
            errors.append((ti.task_id, text))
        return result

    dag_module._run_task = run_task
    try:
        yield errors
    finally:
        dag_module._run_task = original


def failure_line(dag_run: Any, errors: list[tuple[str, str]]) -> str:
    """The last line of a failed run: the first task that failed for good, with its own error (never the
    ``finish``/``report`` lines that only repeat which tasks failed, nor a later SciCat step's complaint)."""
    failed = [ti.task_id for ti in dag_run.get_task_instances() if ti.state == "failed"]
    for task_id, text in errors:
        if task_id in failed:
            return f"{dag_run.dag_id}: {task_id} failed: {text}"
    if failed:
        return f"{dag_run.dag_id}: failed: {', '.join(sorted(failed))} (their logs say why)"
    return f"{dag_run.dag_id}: {dag_run.state}"


@contextlib.contextmanager
def facility_at(url: str | None, facility_root: Path, log_file: Path) -> Iterator[tuple[str, Path]]:
    """``(url, root)`` of the facility to use: the one running at ``url`` (its root as it reports it), or
    a new one under ``facility_root``, stopped on exit."""
    if url:
        url = url.rstrip("/")
        try:
            health = httpx.get(f"{url}/_facility/health", timeout=5).json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SystemExit(f"no local facility answers at {url} ({exc}); start one with `make facility`") from None
        print(f"using the running facility at {url} (root {health['root']})", file=sys.stderr)
        yield url, Path(health["root"])
        return
    with Facility(facility_root, log_file=log_file) as facility:
        yield facility.url, facility_root


def run(
    dag_id: str,
    conf: dict[str, Any],
    *,
    home: Path,
    facility_root: Path,
    facility_url: str | None = None,
    log_file: Path | None = None,
) -> int:
    """Run ``dag_id`` with ``conf``; print each output (``output: PATH``). With ``log_file``, Airflow's logs go
    there and the run ends with a short table instead (``make demo``)."""
    from tools.local_airflow import configure_environment, seed_database, tolerate_dag_test_callback_context

    home.mkdir(parents=True, exist_ok=True)
    with facility_at(facility_url, facility_root, home / "facility.log") as (url, facility_root):
        with logs_to(log_file):  # the database's set-up and the DAG files' parsing log too: into the log file
            configure_environment(home, facility_url=url, facility_root=facility_root)
            seed_database()
            tolerate_dag_test_callback_context()
            from airflow.dag_processing.dagbag import DagBag

            bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
        if bag.import_errors:
            for path, error in bag.import_errors.items():
                print(f"DAG import error in {path}:\n{error}", file=sys.stderr)
            return 2
        dag = bag.get_dag(dag_id)
        if dag is None:
            print(f"no DAG {dag_id!r}; known: {', '.join(sorted(bag.dag_ids))}", file=sys.stderr)
            return 2
        from airflow.sdk.exceptions import ParamValidationError

        try:
            with logs_to(log_file), task_errors() as errors:
                dag_run = dag.test(run_conf=conf)
        except ParamValidationError as exc:  # Airflow's message prints the regex or the whole schema
            from dags.pipelines.params import conf_refusal

            line = conf_refusal(conf, dag.params) or str(exc).splitlines()[0]
            print(f"{dag_id}: conf refused: {line}", file=sys.stderr)
            return 2
        state = str(getattr(dag_run, "state", "unknown"))
        print(f"{dag_id} run {dag_run.run_id}: {state}", file=sys.stderr)
        endpoints = load_endpoints("local", facility_root=facility_root)
        paths = [endpoints.posix(output) for output in run_outputs(dag_id, dag_run.run_id)]
        if log_file is not None:
            print("\n".join(summary(dag_run, paths, log_file)))
        else:
            for output, path in zip(run_outputs(dag_id, dag_run.run_id), paths, strict=True):
                if path.is_file():  # a copied file: its checksum, to compare across copies
                    print(f"md5 {_md5(path)}  {output}", file=sys.stderr)
                print(f"output: {path}")
        if state == "success":
            return 0
        sys.stdout.flush()
        print(failure_line(dag_run, errors), file=sys.stderr)  # the run's last line: what went wrong
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.run_dag", description=__doc__.splitlines()[0])
    parser.add_argument("dag_id")
    parser.add_argument("--conf", default="{}", help="the run's conf as a JSON object")
    parser.add_argument("--home", type=Path, default=REPO_ROOT / ".airflow", help="local AIRFLOW_HOME")
    parser.add_argument("--facility-root", type=Path, default=default_facility_root())
    parser.add_argument(
        "--facility-url",
        default=os.environ.get("FACILITY_URL") or None,
        help="use the facility already running there (default: $FACILITY_URL; unset: start one)",
    )
    args = parser.parse_args(argv)
    return run(
        args.dag_id,
        parse_conf(args.conf),
        home=args.home.resolve(),
        facility_root=args.facility_root.resolve(),
        facility_url=args.facility_url,
    )


if __name__ == "__main__":
    sys.exit(main())
