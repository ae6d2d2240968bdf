"""Start and stop the local facility as a child process, and talk to its admin routes."""

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Facility:
    """A running local facility: ``with Facility(root) as facility: facility.url``."""

    def __init__(self, root: Path, port: int | None = None, log_file: Path | None = None) -> None:
        self.root = Path(root).resolve()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = log_file or (self.root.parent / f"facility-{self.port}.log")
        self._proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> Facility:
        self.root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
        log = open(self.log_file, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "include.facility", "--root", str(self.root), "--port", str(self.port)],
            cwd=REPO_ROOT,
            env=env,
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
        return httpx.get(f"{self.url}/_facility/stats", timeout=5).json()["counters"]

    def inject(self, service: str, kind: str = "http", **fields) -> None:
        response = httpx.post(f"{self.url}/_facility/faults", json={"service": service, "kind": kind, **fields})
        response.raise_for_status()

    def reset(self) -> None:
        httpx.post(f"{self.url}/_facility/reset", timeout=5).raise_for_status()
