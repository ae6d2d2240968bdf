"""The production-shaped local stack: Airflow's own processes on PostgreSQL, plus the local facility.

``LocalStack(home).start()`` creates the database (idempotently), migrates it and seeds the variables and
pools of airflow_settings.yaml, then starts the local facility and Airflow's api-server, scheduler,
dag-processor and triggerer (and a Celery worker with ``executor="CeleryExecutor"``, or the ``workers`` given,
each serving a queue with an environment of its own), each as its own
process group whose pid is kept in ``<home>/pids/<component>.pid`` and whose output goes to
``<home>/logs/<component>.log``. ``stop()`` reads those pid files, so a stack started by one process
(``make serve``) is stopped by another (``make stop``). ``airflow standalone`` is not used: it ignores
SIGTERM and orphans its children.

The stack's secrets (API JWT secret, Fernet key, UI login, manifest signing key, database password) are
generated once and kept in ``<home>`` with mode 0600; they are passed to the Airflow processes through the
environment and never printed by this module except the UI login, which ``make serve`` shows on purpose.
The facility gets none of them (a clean environment, facility/process.py); its admin token is in
``<home>/facility.admin-token``. Airflow connects to PostgreSQL as a role of its own (``<database>_airflow``,
not a superuser) with a generated password; ``ALS_POSTGRES_URL`` (an administrator, default ``postgres``)
is used only to create that role and the database.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from facility.process import Facility, facility_command, facility_environment, free_port
from include.endpoints import REPO_ROOT
from tools.local_airflow import secret_file as _secret_file

#: Where ``make serve`` keeps the stack (pids, logs, facility, secrets).
DEFAULT_HOME = REPO_ROOT / ".airflow-stack"
#: The PostgreSQL server as an administrator: used only to create the stack's role and database.
POSTGRES_URL = os.environ.get("ALS_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("ALS_REDIS_URL", "redis://127.0.0.1:6379")
TERMINAL_STATES = frozenset({"success", "failed"})
USERNAME = "admin"

#: Component → the airflow sub-command that runs it (the facility is started separately).
COMMANDS: dict[str, list[str]] = {
    "api-server": ["api-server"],
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer"],
    "celery-worker": ["celery", "worker", "--concurrency", "2"],
}
FACILITY = "facility"
WORKER = "celery-worker"


@dataclass(frozen=True)
class Worker:
    """A Celery worker of the stack: the queue it serves (None: the stack's default queue) and what its own
    environment adds to the stack's (e.g. ``LOCAL_FACILITY_ROOT``: which disk it sees)."""

    queue: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)


class StackError(RuntimeError):
    """The stack could not start, or a request to it failed."""


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return ""


class LocalStack:
    """api-server, scheduler, dag-processor, triggerer (+ celery worker) on PostgreSQL, plus the local facility."""

    def __init__(
        self,
        home: Path = DEFAULT_HOME,
        *,
        port: int = 8080,
        database: str = "als_airflow",
        executor: str = "LocalExecutor",
        facility_root: Path | None = None,
        facility_port: int | None = None,
        env: Mapping[str, str] | None = None,
        workers: Mapping[str, Worker] | None = None,
    ) -> None:
        """``env``: added to every Airflow process's environment. ``workers`` (CeleryExecutor): the Celery workers,
        by component name (``celery-worker`` or ``celery-worker-<name>``); default one ``celery-worker`` on the
        default queue."""
        if executor not in ("LocalExecutor", "CeleryExecutor"):
            raise ValueError(f"executor must be LocalExecutor or CeleryExecutor, not {executor!r}")
        workers = dict(workers or {WORKER: Worker()}) if executor == "CeleryExecutor" else {}
        if bad := [name for name in workers if not (name == WORKER or name.startswith(f"{WORKER}-"))]:
            raise ValueError(f"workers: {', '.join(bad)}: a worker's name is {WORKER} or {WORKER}-<name>")
        self.workers: dict[str, Worker] = workers
        self.extra_env = dict(env or {})
        self.home = Path(home).resolve()
        self.port = port
        self.database = database
        self.executor = executor
        self.facility_root = Path(facility_root).resolve() if facility_root else self.home / "facility"
        self.facility_port = facility_port or free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.ui_url = f"{self.api_url}/"
        self.username = USERNAME
        self.facility = Facility(
            self.facility_root,
            port=self.facility_port,
            log_file=self.log_dir / "facility.log",
            token_file=self.home / "facility.admin-token",
        )
        self._env: dict[str, str] | None = None
        self._token: str | None = None
        self._http = httpx.Client(base_url=self.api_url, timeout=30.0)

    # ---------------------------------------------------------------- layout
    @property
    def pid_dir(self) -> Path:
        return self.home / "pids"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def components(self) -> list[str]:
        """The Airflow processes this stack runs, in start order."""
        return ["api-server", "scheduler", "dag-processor", "triggerer", *self.workers]

    @property
    def password(self) -> str:
        """The UI/API password of ``username`` (simple auth manager), generated once per home."""
        self.home.mkdir(parents=True, exist_ok=True)
        raw = _secret_file(self.home / "passwords.json", lambda: json.dumps({USERNAME: secrets.token_urlsafe(12)}))
        return json.loads(raw)[USERNAME]

    @property
    def database_role(self) -> str:
        """The PostgreSQL role Airflow connects as (owns the stack's database; not a superuser)."""
        return f"{self.database}_airflow"

    @property
    def database_url(self) -> str:
        """SQLAlchemy URL of the stack's database as its own role, with its generated password."""
        self.home.mkdir(parents=True, exist_ok=True)
        password = _secret_file(self.home / "postgres.password", lambda: secrets.token_urlsafe(24))
        server = urlsplit(POSTGRES_URL)
        where = f"{server.hostname or '127.0.0.1'}:{server.port or 5432}"
        return f"postgresql+psycopg2://{quote(self.database_role)}:{quote(password)}@{where}/{self.database}"

    @property
    def env(self) -> dict[str, str]:
        """The environment every Airflow process of this stack runs with (no secret is logged from it)."""
        if self._env is None:
            self._env = self._build_env()
        return dict(self._env)

    @property
    def _log_ports(self) -> dict[str, int]:
        """Ports of the worker and triggerer log servers: free ones, chosen once per home."""
        raw = _secret_file(
            self.home / "log-ports.json", lambda: json.dumps({"worker_log": free_port(), "trigger_log": free_port()})
        )
        return json.loads(raw)

    def _build_env(self) -> dict[str, str]:
        from tools.local_airflow import configure_environment

        self.home.mkdir(parents=True, exist_ok=True)
        saved = dict(os.environ)
        try:  # configure_environment writes os.environ; keep the caller's environment untouched
            airflow_env = configure_environment(
                self.home,
                facility_url=self.facility.url,
                facility_root=self.facility_root,
                database_url=self.database_url,
            )
        finally:
            os.environ.clear()
            os.environ.update(saved)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(airflow_env)
        self.password  # noqa: B018 - create the password file before any process reads it
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": self.executor,
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
                "AIRFLOW__CORE__FERNET_KEY": _secret_file(self.home / "fernet.key", _fernet_key),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": _secret_file(self.home / "api.secret", lambda: secrets.token_urlsafe(32)),
                "AIRFLOW__API_AUTH__JWT_SECRET": _secret_file(
                    self.home / "jwt.secret", lambda: secrets.token_urlsafe(48)
                ),
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
                    [
                        {
                            "name": "dags-folder",
                            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                            "kwargs": {},
                        }
                    ]
                ),
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                # the log servers of workers and triggerer: ports of this stack's own (not 8793/8794), so
                # several stacks share a machine
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self._log_ports["worker_log"]),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self._log_ports["trigger_log"]),
            }
        )
        if self.executor == "CeleryExecutor":
            broker_db = sum(self.database.encode()) % 16  # one Redis database per stack, by name
            env.update(
                {
                    "AIRFLOW__CELERY__BROKER_URL": f"{REDIS_URL}/{broker_db}",
                    "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.database_url.replace("+psycopg2", "", 1),
                    # a queue of its own, so a worker of another stack on the same Redis never takes these tasks
                    "AIRFLOW__OPERATORS__DEFAULT_QUEUE": f"als-{self.database}",
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
                }
            )
        env.update(self.extra_env)
        return env

    # ---------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 180) -> LocalStack:
        """Create/migrate/seed the database, start the facility and every component, wait until usable."""
        deadline = time.monotonic() + timeout
        for directory in (self.home, self.pid_dir, self.log_dir, self.facility_root):
            directory.mkdir(parents=True, exist_ok=True)
        running = [name for name in [FACILITY, *self.components] if self.pid(name)]
        if running:
            raise StackError(f"already running under {self.home}: {', '.join(running)} (make stop)")
        self._check_port_free()
        try:
            self._start_facility()
            self.create_database()
            self._migrate(timeout=max(30.0, deadline - time.monotonic()))
            for name in self.components:
                self._spawn(name)
            self._wait_ready(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    @contextlib.contextmanager
    def running(self, timeout: float = 300) -> Iterator[LocalStack]:
        """The started stack for the block; stopped, every process of it, and its database dropped after (tests)."""
        try:
            yield self.start(timeout=timeout)
        finally:
            self.stop()
            self.drop_database()

    def stop(self) -> None:
        """Stop everything this stack started (by pid file; SIGTERM, then SIGKILL). Idempotent."""
        for name in dict.fromkeys([*reversed(self.components), WORKER, FACILITY]):
            self._terminate(name)
        self._token = None

    def restart(self, component: str, *, kill: bool = False, timeout: float = 60) -> None:
        """Stop ``component`` (gracefully, or ``kill=True`` for SIGKILL, as a crash) and start it again."""
        if component not in [*self.components, FACILITY]:
            raise ValueError(f"unknown component {component!r}; one of {', '.join(self.components)}")
        self._terminate(component, sig=signal.SIGKILL if kill else signal.SIGTERM)
        if component == FACILITY:
            self._start_facility()
        else:
            self._spawn(component)
            if component == "api-server":
                self._wait_api(time.monotonic() + timeout)

    def pid(self, component: str) -> int | None:
        """The pid of a running component of this stack, or None."""
        pid = _read_pid(self.pid_dir / f"{component}.pid")
        if pid is None or not _alive(pid):
            return None
        # a recycled pid is not ours; a Celery worker retitles itself ("[celeryd: celery@host:MainProcess] ...")
        markers = {FACILITY: ("facility",)}.get(component)
        if component.startswith(WORKER):
            markers = ("airflow", "celeryd")
        command = _cmdline(pid)
        return pid if any(marker in command for marker in markers or ("airflow",)) else None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- REST API
    def token(self) -> str:
        """A JWT for the REST API (``POST /auth/token`` of the simple auth manager)."""
        response = self._http.post("/auth/token", json={"username": self.username, "password": self.password})
        if response.status_code not in (200, 201):
            raise StackError(f"POST /auth/token answered {response.status_code}")
        return response.json()["access_token"]

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        """An authenticated REST call (token fetched once, refreshed on 401); raises on an error answer."""
        for attempt in range(2):
            if self._token is None:
                self._token = self.token()
            response = self._http.request(method, path, headers={"Authorization": f"Bearer {self._token}"}, **kwargs)
            if response.status_code == 401 and attempt == 0:
                self._token = None
                continue
            break
        if response.is_error:
            raise StackError(f"{method} {path} answered {response.status_code}: {response.text[:500]}")
        return response

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Unpause ``dag_id`` if needed and trigger a run with ``conf`` through the REST API; return its run id."""
        self.unpause(dag_id)
        body = {"logical_date": None, "conf": dict(conf or {})}
        return self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body).json()["dag_run_id"]

    def unpause(self, dag_id: str) -> None:
        if self.request("GET", f"/api/v2/dags/{dag_id}").json().get("is_paused"):
            self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()["state"]

    def wait(self, dag_id: str, run_id: str, timeout: float = 600, poll: float = 3.0) -> str:
        """Poll the run until it is ``success`` or ``failed``; return that state (TimeoutError past ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.run_state(dag_id, run_id)
            if state in TERMINAL_STATES:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} run {run_id} still {state} after {timeout:.0f}s")
            time.sleep(poll)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """Every task instance of a run (mapped ones included), as the REST API lists them."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return self.request("GET", path, params={"limit": 1000}).json()["task_instances"]

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run ``airflow ARGS`` against this stack (its environment); output captured as text."""
        return subprocess.run(
            [self._airflow(), *args], env=self.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
        )

    # ---------------------------------------------------------------- internals
    @staticmethod
    def _airflow() -> str:
        return str(Path(sys.executable).with_name("airflow"))

    def _check_port_free(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(self.api_url, timeout=1.0)
            raise StackError(f"{self.api_url} already answers: another server holds port {self.port}")

    def create_database(self) -> None:
        """Create (idempotently) the stack's role, with the password kept in ``<home>``, and its database,
        owned by that role; an existing database and its tables are handed to the role."""
        import psycopg2
        from psycopg2 import sql

        password = urlsplit(self.database_url).password
        role, database = sql.Identifier(self.database_role), sql.Identifier(self.database)
        connection = psycopg2.connect(f"{POSTGRES_URL}/postgres")
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.database_role,))
                verb = "ALTER" if cursor.fetchone() else "CREATE"
                with contextlib.suppress(psycopg2.errors.DuplicateObject):  # created concurrently
                    cursor.execute(
                        sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %s").format(role),
                        (password,),
                    )
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
                if cursor.fetchone() is None:
                    with contextlib.suppress(psycopg2.errors.DuplicateDatabase):  # created concurrently
                        cursor.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(database, role))
                else:
                    cursor.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(database, role))
        finally:
            connection.close()
        self._adopt_objects()

    def _adopt_objects(self) -> None:
        """Hand the tables, sequences, views and types of the database's ``public`` schema to the stack's role
        (a database made by an earlier version, as ``postgres``)."""
        import psycopg2
        from psycopg2 import sql

        connection = psycopg2.connect(f"{POSTGRES_URL}/{self.database}")
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                role = sql.Identifier(self.database_role)
                cursor.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(role))
                cursor.execute(
                    "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'S', 'p') "
                    "AND pg_get_userbyid(c.relowner) <> %s",
                    (self.database_role,),
                )
                kinds = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}
                for name, kind in cursor.fetchall():
                    statement = "ALTER " + kinds[kind] + " {} OWNER TO {}"
                    with contextlib.suppress(psycopg2.errors.DependentObjectsStillExist):  # owned sequences follow
                        cursor.execute(sql.SQL(statement).format(sql.Identifier("public", name), role))
                cursor.execute(
                    "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
                    "WHERE n.nspname = 'public' AND t.typtype = 'e' AND pg_get_userbyid(t.typowner) <> %s",
                    (self.database_role,),
                )
                for (name,) in cursor.fetchall():
                    cursor.execute(sql.SQL("ALTER TYPE {} OWNER TO {}").format(sql.Identifier("public", name), role))
        finally:
            connection.close()

    def drop_database(self) -> None:
        """Drop the stack's database and role (tests: a database of their own per session). Stop first."""
        import psycopg2
        from psycopg2 import sql

        connection = psycopg2.connect(f"{POSTGRES_URL}/postgres")
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.database)))
                cursor.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(self.database_role)))
        finally:
            connection.close()

    def _migrate(self, timeout: float) -> None:
        """Migrate the metadata database and write the variables and pools (a child process: clean env)."""
        code = "from tools.local_airflow import seed_database; seed_database()"
        with open(self.log_dir / "migrate.log", "ab") as log:
            result = subprocess.run(
                [sys.executable, "-c", code], env=self.env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                timeout=timeout,
            )  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"database migration failed; see {self.log_dir / 'migrate.log'}")

    def _start_facility(self) -> None:
        """The facility, with a clean environment (none of the stack's secrets) and its admin token file."""
        command = facility_command(self.facility_root, self.facility_port, self.facility.token_file)
        self._popen(FACILITY, command, facility_environment(self.facility_root))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.facility.url}/_facility/health", timeout=1.0).status_code == 200:
                    return
            if self.pid(FACILITY) is None:
                break
            time.sleep(0.2)
        raise StackError(f"the local facility did not start; see {self.log_dir / 'facility.log'}")

    def _spawn(self, component: str) -> None:
        env = self.env
        command = [self._airflow(), *COMMANDS[WORKER if component in self.workers else component]]
        if component == "api-server":
            command += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        elif component in self.workers:
            worker = self.workers[component]
            command += ["--queues", worker.queue or env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"]]
            if component != WORKER:  # a Celery node name and a log server port of its own beside the default's
                command += ["--celery-hostname", f"{component}@%h"]
                env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(free_port())
            env.update(worker.env)
        self._popen(component, command, env)

    def _popen(self, component: str, command: list[str], env: Mapping[str, str]) -> None:
        with open(self.log_dir / f"{component}.log", "ab") as log:
            process = subprocess.Popen(
                command,
                env=dict(env),
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped with its children
                # a process started in the background ignores SIGINT unless told otherwise
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )
        (self.pid_dir / f"{component}.pid").write_text(f"{process.pid}\n")

    def _terminate(self, component: str, sig: signal.Signals = signal.SIGTERM, grace: float = 30.0) -> None:
        pid_file = self.pid_dir / f"{component}.pid"
        pid = self.pid(component)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + grace
            while _alive(pid) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.2)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # the leader, and anything of its group still there
            _reap(pid)
        pid_file.unlink(missing_ok=True)

    def _wait_api(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if self._http.get("/api/v2/monitor/health", timeout=2.0).status_code == 200:
                    return
            self._check_alive(["api-server"])
            time.sleep(0.5)
        raise StackError(f"the API did not answer on {self.api_url}; see {self.log_dir / 'api-server.log'}")

    def _wait_ready(self, deadline: float) -> None:
        """Until the API answers and every file of dags/ is parsed (an import error raises)."""
        self._wait_api(deadline)
        expected = {str(path) for path in (REPO_ROOT / "dags").glob("*.py") if not path.name.startswith("_")}
        while time.monotonic() < deadline:
            self._check_alive(self.components)
            errors = self.request("GET", "/api/v2/importErrors").json()["import_errors"]
            if errors:
                raise StackError(
                    "DAG import errors: " + "; ".join(f"{e['filename']}: {e['stack_trace']}" for e in errors)
                )
            dags = self.request("GET", "/api/v2/dags", params={"limit": 1000}).json()["dags"]
            if expected <= {dag["fileloc"] for dag in dags}:
                return
            time.sleep(1.0)
        raise StackError(f"DAGs not parsed in time; see {self.log_dir / 'dag-processor.log'}")

    def _check_alive(self, components: Iterable[str]) -> None:
        dead = [name for name in components if self.pid(name) is None]
        if dead:
            raise StackError(f"{', '.join(dead)} exited; see {self.log_dir}/<component>.log")

    def describe(self) -> str:
        """Where the stack answers and how to log in (shown by ``make serve``)."""
        pids = ", ".join(f"{name}={self.pid(name)}" for name in [FACILITY, *self.components])
        return (
            f"Airflow UI:  {self.ui_url}\nREST API:    {self.api_url}/api/v2\n"
            f"Login:       {self.username} / {self.password}\nFacility:    {self.facility.url} "
            f"(root {self.facility_root}; admin token in {self.facility.token_file})\n"
            f"Executor:    {self.executor}, database {self.database} (role {self.database_role})\n"
            f"Processes:   {pids}\nLogs, pids:  {self.log_dir}, {self.pid_dir}\n"
            f"Airflow CLI: make airflow{self.make_args} ARGS='dags list'\n"
            f"A scan:      make scan{self.make_args} (writes one on this stack's spot832)\n"
            f"Stop with:   make stop{self.make_args}"
        )

    @property
    def make_args(self) -> str:
        """What names this stack to the make targets (nothing for the default home)."""
        return "" if self.home == DEFAULT_HOME.resolve() else f" STACK_HOME={self.home}"


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


#: What ``serve`` records in ``<home>/stack.json``, so ``stop``, ``airflow``, ``scan`` and the next ``serve`` name
#: the same stack.
SETTINGS = ("port", "database", "executor", "facility_port", "facility_root")
DEFAULTS: dict[str, Any] = {
    "port": 8080,
    "database": "als_airflow",
    "executor": "LocalExecutor",
    "facility_port": 8765,
    "facility_root": None,
}


def stack_settings(home: Path, given: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of the stack under ``home``: those given, else those ``serve`` recorded there, else the
    defaults (so a home keeps its database, ports and facility from one ``serve`` to the next)."""
    recorded: dict[str, Any] = {}
    with contextlib.suppress(FileNotFoundError):
        recorded = json.loads((Path(home) / "stack.json").read_text())
    return {key: given[key] if given.get(key) is not None else recorded.get(key, DEFAULTS[key]) for key in SETTINGS}


def _record(stack: LocalStack) -> None:
    settings = {
        "port": stack.port,
        "database": stack.database,
        "executor": stack.executor,
        "facility_port": stack.facility_port,
        "facility_root": str(stack.facility_root),
    }
    (stack.home / "stack.json").write_text(json.dumps(settings, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.local_stack",
        description=__doc__.splitlines()[0],
        epilog="serve records its settings in <home>/stack.json; stop, airflow and scan then need only --home. "
        "airflow ARGS runs the stack's airflow CLI with the stack's environment (its database, connections); "
        "scan writes a sample scan on the stack's spot832 and prints the conf to trigger it with.",
    )
    parser.add_argument("action", choices=["serve", "stop", "airflow", "scan"])
    parser.add_argument("args", nargs=argparse.REMAINDER, help="airflow: the airflow CLI's arguments")
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    parser.add_argument("--port", type=int, default=None, help="the API server and UI (default 8080)")
    parser.add_argument("--database", default=None, help="PostgreSQL database (default als_airflow)")
    parser.add_argument("--executor", default=None, choices=["LocalExecutor", "CeleryExecutor"])
    parser.add_argument("--facility-port", type=int, default=None, help="the local facility (default 8765)")
    parser.add_argument("--facility-root", type=Path, default=None, help="default <home>/facility")
    args = parser.parse_args(argv)
    home = args.home.resolve()
    given = {key: getattr(args, key) for key in SETTINGS}
    settings = stack_settings(home, given)
    stack = LocalStack(home, **settings)
    if args.action == "stop":
        stack.stop()
        print(f"stopped the stack under {stack.home}")
        return 0
    if args.action == "airflow":
        command = args.args[1:] if args.args[:1] == ["--"] else args.args
        # the CLI warns on every dags command that graphviz (only for `dags show`) is missing
        env = {**stack.env, "PYTHONWARNINGS": "ignore:Could not import graphviz"}
        return subprocess.run([stack._airflow(), *command], env=env, cwd=REPO_ROOT).returncode
    if args.action == "scan":
        from tools.demo import write_demo_scan

        conf = json.dumps({"file_path": write_demo_scan(stack.facility_root)})
        print(
            f"conf: {conf}\nunpause: make airflow{stack.make_args} ARGS='dags unpause bl832_dispatcher'\n"
            f"trigger: make airflow{stack.make_args} ARGS='dags trigger bl832_dispatcher' CONF='{conf}'"
        )
        return 0
    started = time.monotonic()
    try:
        stack.start()
    except StackError as exc:
        print(f"make serve: {exc}", file=sys.stderr)
        return 1
    _record(stack)
    print(f"stack up in {time.monotonic() - started:.0f}s\n{stack.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
