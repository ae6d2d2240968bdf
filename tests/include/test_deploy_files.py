"""Issue 23, findings 3 and 4: the README's commands, the stack named by --home, the placeholder list and the
files `astro dev` builds from (docs/deploy.md)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from include.endpoints import REPO_ROOT
from tools.local_airflow import connection_env, load_settings
from tools.local_stack import stack_settings

COMPOSE = REPO_ROOT / "docker-compose.override.yml"
AIRFLOW_SERVICES = ("scheduler", "dag-processor", "api-server", "triggerer")
FACILITY_URL = "http://facility:8765"


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )  # fmt: skip


# ------------------------------------------------------------------ finding 3: README, make targets, --home
def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (REPO_ROOT / "Makefile").read_text(), re.M))


def test_i23_finding_3_readme_starts_with_demo_and_test_and_names_only_real_targets():
    readme = (REPO_ROOT / "README.md").read_text()
    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split("#")[0].strip() for line in first_block[:2]] == ["make demo", "make test"]
    used = set(re.findall(r"\bmake ([a-z][a-z-]*)", readme))
    assert {"serve", "stop", "airflow", "scan", "placeholders"} <= used, used
    assert used <= make_targets(), f"README names targets the Makefile lacks: {used - make_targets()}"
    # the CLI section runs airflow through the stack, not a bare `airflow` that is not on PATH
    assert not re.search(r"^\s*airflow dags trigger", readme, re.M)


def test_i23_finding_3_stop_airflow_and_scan_read_the_stack_that_serve_recorded(tmp_path):
    recorded = {"port": 8391, "database": "als_h8", "executor": "LocalExecutor", "facility_port": 8791}
    (tmp_path / "stack.json").write_text(json.dumps({**recorded, "facility_root": str(tmp_path / "fac")}))
    none = dict.fromkeys(recorded | {"facility_root": None})
    assert stack_settings(tmp_path, none) == {**recorded, "facility_root": str(tmp_path / "fac")}
    assert stack_settings(tmp_path, {**none, "port": 9000})["port"] == 9000  # what is given wins
    assert stack_settings(tmp_path / "fresh", none)["port"] == 8080  # a new home starts from the defaults


def test_i23_finding_3_make_airflow_runs_with_the_stacks_database_not_sqlite(tmp_path):
    """`make airflow` = `local_stack --home H airflow ARGS`: the CLI sees the stack's PostgreSQL database."""
    (tmp_path / "stack.json").write_text(json.dumps({"database": "als_h8_cli", "port": 8391}))
    done = run("tools.local_stack", "--home", str(tmp_path), "airflow", "config", "get-value", "database",
               "sql_alchemy_conn")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    url = done.stdout.strip().splitlines()[-1]
    assert url.startswith("postgresql+psycopg2://als_h8_cli_airflow:") and url.endswith("/als_h8_cli"), (
        "not the stack's"
    )


def test_i23_finding_3_make_scan_writes_into_the_stacks_facility(tmp_path):
    root = tmp_path / "facility"
    (tmp_path / "stack.json").write_text(json.dumps({"facility_root": str(root)}))
    done = run("tools.local_stack", "--home", str(tmp_path), "scan")
    assert done.returncode == 0, done.stderr[-2000:]
    conf = json.loads(done.stdout.split("conf: ", 1)[1].splitlines()[0])
    relative = conf["file_path"].removeprefix("/global/raw/")
    assert (root / "spot832" / "raw" / relative).is_file()
    assert f"STACK_HOME={tmp_path}" in done.stdout and "CONF='" in done.stdout


# ------------------------------------------------------------------ finding 4: placeholders
def placeholders(*args: str) -> subprocess.CompletedProcess:
    return run("tools.placeholders", *args)


def test_i23_finding_4_placeholders_lists_each_with_file_and_key_and_fails_for_production():
    done = placeholders()
    assert done.returncode == 1, done.stdout + done.stderr
    for expected in (
        "[production] include/config/endpoints.yaml: collections.olcf_orion.uuid:",
        "[production] include/config/endpoints.yaml: endpoints.olcf832_raw.root:",
        "[production] include/config/sites.yaml: sites.olcf.compute_endpoint_id:",
        "[production] include/config/nersc.yaml: production.container.image:",
        "[local only] airflow_settings.yaml: connections.als_signing.conn_password:",
    ):
        assert expected in done.stdout, done.stdout


@pytest.fixture
def config_copy(tmp_path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(REPO_ROOT / "include" / "config", target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path.name}: {old!r} not found"
    path.write_text(text.replace(old, new))


def test_i23_finding_4_placeholders_passes_once_replaced_or_unused(config_copy):
    edit(config_copy / "sites.yaml", "    enabled: true\n    runner: globus_compute\n    compute_endpoint_id: 0c1f",
         "    enabled: false\n    runner: globus_compute\n    compute_endpoint_id: 0c1f")  # fmt: skip
    done = placeholders("--config-dir", str(config_copy))
    assert "[unused] include/config/sites.yaml: sites.olcf.compute_endpoint_id" in done.stdout
    assert "[unused] include/config/endpoints.yaml: collections.olcf_orion.uuid" in done.stdout
    assert done.returncode == 1  # the container digest is still the all-zero one
    edit(config_copy / "nersc.yaml", "sha256:" + "0" * 64, "sha256:" + "ab" * 32)
    done = placeholders("--config-dir", str(config_copy))
    assert done.returncode == 0, done.stdout
    assert "[production]" not in done.stdout


# ------------------------------------------------------------------ finding 4: astro dev
def test_i23_finding_4_astro_project_files_exist_and_parse():
    config = yaml.safe_load((REPO_ROOT / ".astro" / "config.yaml").read_text())
    assert config["project"]["name"]
    assert (REPO_ROOT / "packages.txt").is_file()
    assert (REPO_ROOT / "Dockerfile").read_text().startswith("# ") and "FROM astrocrpublic.azurecr.io/runtime:" in (
        REPO_ROOT / "Dockerfile"
    ).read_text()
    assert load_settings()["connections"]
    for folder in ("dags", "plugins", "include"):
        assert (REPO_ROOT / folder).is_dir()


def dockerignored(path: str) -> bool:
    """Whether ``path`` (or a folder above it) matches a pattern of .dockerignore (Docker's ``**``/``*`` rules)."""
    patterns = [
        line.strip().lstrip("/")
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    regexes = []
    for pattern in patterns:
        body = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        regexes.append(re.compile(body + r"\Z"))
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(regex.match(prefix) for regex in regexes for prefix in prefixes)


@pytest.mark.parametrize(
    "path",
    [".venv/bin/python", ".facility/spot832/raw/x.h5", ".airflow/airflow.db", ".airflow-stack/passwords.json",
     ".git/HEAD", "tests/ui/node_modules/x/index.js", "include/__pycache__/paths.cpython-311.pyc",
     ".ruff_cache/x", ".pytest_cache/v"],
)  # fmt: skip
def test_i23_finding_4_dockerignore_excludes_local_state(path):
    assert dockerignored(path)


@pytest.mark.parametrize(
    "path", ["requirements.txt", "constraints.txt", "dags/bl832_dispatcher.py", "include/paths.py",
             "plugins/als_provider/__init__.py", "compute_functions/reconstruct.py", "airflow_settings.yaml",
             "packages.txt"]
)  # fmt: skip
def test_i23_finding_4_dockerignore_keeps_the_sources(path):
    assert not dockerignored(path)


def test_i23_finding_4_image_installs_from_the_lock():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"^COPY .*\bconstraints\.txt\b", dockerfile, re.M)
    assert re.search(r"^RUN pip install .*-r requirements\.txt -c constraints\.txt", dockerfile, re.M)
    lock = dict(
        line.split("==", 1) for line in (REPO_ROOT / "constraints.txt").read_text().splitlines() if "==" in line
    )
    lock = {name.lower().replace("_", "-"): version for name, version in lock.items()}
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            name = re.sub(r"\[.*\]", "", name).lower().replace("_", "-")
            assert lock.get(name) == version.strip(), f"{name}: requirements {version} vs lock {lock.get(name)}"


def test_i23_finding_4_compose_runs_the_facility_and_the_connections_name_it():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    facility = services["facility"]
    command = [str(part) for part in facility["command"]]
    assert facility["entrypoint"][-1] == "facility"
    assert command[command.index("--host") + 1] == "0.0.0.0" and command[command.index("--port") + 1] == "8765"
    assert "ports" not in facility  # reachable on the compose network only
    root = command[command.index("--root") + 1]
    expected = connection_env(load_settings(), FACILITY_URL)
    facility_conns = [
        name for name, value in connection_env(load_settings()).items() if "127.0.0.1:8765" in value
    ]  # every connection airflow_settings.yaml points at the facility
    assert facility_conns
    for name in AIRFLOW_SERVICES:
        service = services[name]
        env = service["environment"]
        assert env["LOCAL_FACILITY_ROOT"] == root and env["ALS_ENDPOINT_PROFILE"] == "local"
        assert any(volume.endswith(f":{root}") for volume in service["volumes"])
        assert "facility" in service["depends_on"]
        for conn in facility_conns:
            assert json.loads(env[conn]) == json.loads(expected[conn]), conn
        assert not any("127.0.0.1" in str(value) for value in env.values()), name
        assert "${ALS_SIGNING_KEY:?" in env["AIRFLOW_CONN_ALS_SIGNING"]
    assert any(volume.endswith(f":{root}") for volume in facility["volumes"])
    assert root.split("/")[-1] in compose["volumes"]
