"""Retention by construction as configuration: include/config/retention.yaml, and what a pipeline asks to delete.

Kept apart from include/manifests.py so that the plans (include/plans.py) can build :class:`DeletionRequest`
values and read the configuration while the manifests check entries against the plans' rules (what a run
regenerates), without an import cycle.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

from include.config_files import load_config
from include.endpoints import REPO_ROOT
from include.paths import EndpointPath

RETENTION_FILE = REPO_ROOT / "include" / "config" / "retention.yaml"


_NAMES = {"type": "array", "items": {"type": "string", "minLength": 1}}
#: The shape of retention.yaml; an endpoint in both lists is refused by :func:`_retention_document`.
SCHEMA: dict = {
    "type": "object",
    "required": ["endpoints", "long_term"],
    "additionalProperties": False,
    "properties": {
        "endpoints": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1}},
        "long_term": _NAMES,
        "regenerate_from_raw": _NAMES,
    },
}


@functools.cache
def _retention_document(source: str = str(RETENTION_FILE)) -> dict[str, Any]:
    document = load_config(source, SCHEMA)
    table, long_term = document.data["endpoints"], document.data["long_term"]
    for index, name in enumerate(long_term):
        if name in table:
            raise document.error(
                ("long_term", index), f"{name!r} is also temporary (endpoints.{name}): an endpoint is one or the other"
            )
    regenerable = document.data.get("regenerate_from_raw", [])
    return {"endpoints": dict(table), "regenerable": frozenset(regenerable), "long_term": frozenset(long_term)}


def retention_map(source: str = str(RETENTION_FILE)) -> tuple[dict[str, str], frozenset[str]]:
    """include/config/retention.yaml: ({endpoint: location} of temporary copies, sites opted in to
    regenerate results from the long-term raw copy)."""
    document = _retention_document(source)
    return dict(document["endpoints"]), document["regenerable"]


def long_term_endpoints(source: str = str(RETENTION_FILE)) -> frozenset[str]:
    """The endpoints include/config/retention.yaml names as holding long-term copies (``long_term``)."""
    return _retention_document(source)["long_term"]


@dataclass(frozen=True)
class DeletionRequest:
    """A copy a pipeline made (or may have made): ``endpoint:path`` may go after ``location``'s retention,
    once ``check_endpoint:path`` is verified. ``after`` names the step (a task id in the pipeline) whose
    success makes the copy exist; ``None``: the copy may exist as soon as the pipeline started (work areas
    a failed step can leave half-written)."""

    endpoint: str
    path: str
    check_endpoint: str
    location: str
    after: str | None = None
    check_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeletionRequest:
        return cls(**data)

    @property
    def check(self) -> EndpointPath:
        return EndpointPath(self.check_endpoint, self.check_path or self.path)

    def __str__(self) -> str:
        return f"{self.endpoint}:{self.path} (check {self.check_endpoint}, {self.location})"
