"""Start and stop the local facility as a child process, and talk to its admin routes.

The facility starts with a clean environment (:func:`facility_environment`: no ``AIRFLOW_*``, no Connection,
Fernet key or JWT secret of the Airflow it serves), so neither it nor the jobs and Compute functions it runs
can read them. Its admin routes (``/_facility/*`` but ``health``) need the token it generates at each start
and keeps in its token file (mode 0600, :func:`token_file_of`); :class:`Facility` reads it from there.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from include.endpoints import REPO_ROOT

#: Variables of the caller's environment the facility keeps (nothing else reaches it or its jobs).
KEPT_VARIABLES = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
                  "FACILITY_COMPUTE_WORKERS", "OMP_NUM_THREADS")  # fmt: skip
#: The header carrying the admin token.
TOKEN_HEADER = "Authorization"


def token_file_of(root: Path, port: int) -> Path:
    """Where the facility serving ``root`` on ``port`` keeps its admin token (beside the root, mode 0600)."""
    root = Path(root).resolve()
    return root.parent / f"{root.name}-{port}.admin-token"


def facility_environment(root: Path) -> dict[str, str]:
    """The facility's whole environment: :data:`KEPT_VARIABLES` of this one, the repository on the path,
    the local profile. No secret of the caller's (Airflow connections, keys) is passed on."""
    env = {name: os.environ[name] for name in KEPT_VARIABLES if name in os.environ}
    env.update(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "ALS_ENDPOINT_PROFILE": "local",
            "LOCAL_FACILITY_ROOT": str(Path(root).resolve()),
        }
    )
    return env


def facility_command(root: Path, port: int, token_file: Path) -> list[str]:
    return [sys.executable, "-m", "facility", "--root", str(root), "--port", str(port),
            "--token-file", str(token_file)]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Facility:
    """A running local facility: ``with Facility(root) as facility: facility.url``."""

    def __init__(
        self, root: Path, port: int | None = None, log_file: Path | None = None, token_file: Path | None = None
    ) -> None:
        self.root = Path(root).resolve()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = log_file or (self.root.parent / f"facility-{self.port}.log")
        self.token_file = Path(token_file) if token_file else token_file_of(self.root, self.port)
        self._proc: subprocess.Popen | None = None

    @property
    def token(self) -> str:
        """The running facility's admin token (from its token file; a new one at each start)."""
        try:
            return self.token_file.read_text().strip()
        except FileNotFoundError:
            raise RuntimeError(f"no facility admin token at {self.token_file}: is the facility running?") from None

    def admin_headers(self) -> dict[str, str]:
        return {TOKEN_HEADER: f"Bearer {self.token}"}

    def start(self, timeout: float = 30.0) -> Facility:
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self._proc = subprocess.Popen(
            facility_command(self.root, self.port, self.token_file),
            cwd=REPO_ROOT,
            env=facility_environment(self.root),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"local facility exited with {self._proc.returncode}; see {self.log_file}")
            try:
                if httpx.get(f"{self.url}/_facility/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"local facility did not answer on {self.url} within {timeout:.0f}s; see {self.log_file}")

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> Facility:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # admin routes
    def stats(self) -> dict[str, int]:
        response = httpx.get(f"{self.url}/_facility/stats", headers=self.admin_headers(), timeout=5)
        response.raise_for_status()
        return response.json()["counters"]

    def inject(self, service: str, kind: str = "http", **fields) -> None:
        body = {"service": service, "kind": kind, **fields}
        response = httpx.post(f"{self.url}/_facility/faults", json=body, headers=self.admin_headers(), timeout=5)
        response.raise_for_status()

    def reset(self) -> None:
        httpx.post(f"{self.url}/_facility/reset", headers=self.admin_headers(), timeout=5).raise_for_status()

    def transfer_limit(self, active_tasks: int | None = None, *, change: bool = True) -> dict:
        """Set the Transfer stand-in's cap on one user's unfinished tasks (``None``: the service's, 100) and return
        it with each user's ACTIVE count (``change=False``: only read them)."""
        url, headers = f"{self.url}/_facility/transfer/limit", self.admin_headers()
        body = {"active_tasks": active_tasks}
        response = httpx.put(url, json=body, headers=headers, timeout=5) if change else httpx.get(url, headers=headers)
        response.raise_for_status()
        return response.json()
