"""Shared state of the local facility: its root folder, credentials, counters and injected faults."""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from include.endpoints import load_endpoints

#: Credentials the local profile uses (airflow_settings.yaml); anything else is refused.
LOCAL_CLIENT_ID = "local-client"
LOCAL_CLIENT_SECRET = "local-secret"


@dataclass
class Fault:
    """One injected fault: answer ``status`` (or do ``kind``) for matching requests, ``times`` times.

    ``service`` is the stand-in (``transfer``, ``compute``, ``sfapi``, ``scicat``, ``auth`` or ``*``);
    ``kind`` is ``http`` for a plain HTTP error answer instead of the request, ``lost_response`` for a request
    that is performed but answered ``status`` instead of its result (as when a gateway times out), or a
    service-specific fault such as ``task_failed`` or ``permission_denied`` (transfer); ``match`` is a regex on
    ``METHOD path`` (for ``http`` and ``lost_response``) or on the service's own subject (a path, a function
    name, a script).
    """

    service: str
    kind: str = "http"
    status: int = 503
    match: str = ".*"
    times: int = 1
    message: str = "injected fault"
    params: dict = field(default_factory=dict)
    hits: int = 0


class FacilityState:
    """What every stand-in shares. Thread-safe."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.endpoints = load_endpoints("local", facility_root=self.root)
        self.client_id = LOCAL_CLIENT_ID
        self.client_secret = LOCAL_CLIENT_SECRET
        self.counters: Counter[str] = Counter()
        self.faults: list[Fault] = []
        self.lock = threading.RLock()

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counters[name] += n

    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def take_fault(self, service: str, kind: str, subject: str) -> Fault | None:
        """Consume and return the first live fault of this service and kind whose regex matches."""
        with self.lock:
            for fault in self.faults:
                if fault.service not in (service, "*") or fault.kind != kind or fault.hits >= fault.times:
                    continue
                if re.search(fault.match, subject):
                    fault.hits += 1
                    return fault
        return None

    def collection_dir(self, collection_uuid: str) -> Path:
        """The folder that serves a collection (:meth:`~include.endpoints.Endpoints.storage_folder`)."""
        path = self.endpoints.storage_folder(self.endpoints.collection_by_uuid(collection_uuid))
        path.mkdir(parents=True, exist_ok=True)
        return path

    def reset(self) -> None:
        with self.lock:
            self.counters.clear()
            self.faults.clear()
