"""What the beamline's existing (upstream, splash_flows) callers send, read in our terms. Plain Python.

Upstream's dispatchers take ``file_path``, ``is_export_control`` and ``config`` (its ``Config832``/``Config733``:
the sections of its ``config.yml``). Here ``is_export_control`` is an alias of ``is_export_controlled``, and
``config`` is accepted where it has a meaning (docs/upstream-callers.md):

- ``globus.globus_endpoints``: an endpoint the caller names that this deployment also has must be the same
  collection and root; a caller that believes a name means another place is refused before anything moves;
  names we do not have are ignored.
- ``globus.globus_apps``, ``harbor_images832``, ``ghcr_images832``, ``prefect``, ``scicat``: ignored
  (credentials live in Airflow Connections, images in include/config/nersc.yaml, jobs in our DAGs); the notes
  name the sections, never their values.
- any other section is refused.
"""

from __future__ import annotations

from typing import Any

from include.endpoints import Endpoints

#: Upstream conf names -> ours.
EXPORT_CONTROL_ALIAS = "is_export_control"
EXPORT_CONTROLLED = "is_export_controlled"
CONFIG = "config"
UPSTREAM_KEYS = frozenset({EXPORT_CONTROL_ALIAS, CONFIG})
#: config.yml sections that do not change what a run does here.
IGNORED_SECTIONS = ("harbor_images832", "ghcr_images832", "prefect", "scicat")
_GLOBUS_KEYS = {"globus_endpoints", "globus_apps"}


def _root(path: Any) -> str:
    text = str(path or "/").strip()
    return "/" + text.strip("/") if text.strip("/") else "/"


def read_config(config: Any, endpoints: Endpoints) -> list[str]:
    """Check an upstream ``config`` against this deployment; the lines to log. Raises ``ValueError``."""
    if config is None or config == {}:
        return []
    if not isinstance(config, dict):
        raise ValueError(f"config must be a JSON object (upstream's config.yml sections), got {type(config).__name__}")
    unknown = sorted(set(config) - {"globus", *IGNORED_SECTIONS})
    if unknown:
        raise ValueError(
            f"config: unknown section(s) {', '.join(unknown)}; accepted: globus, {', '.join(IGNORED_SECTIONS)} "
            "(docs/upstream-callers.md)"
        )
    notes = [f"config.{name}: ignored (this deployment's configuration decides)" for name in sorted(config)]
    notes = [n for n in notes if not n.startswith("config.globus:")]
    globus = config.get("globus")
    globus = {} if globus is None else globus
    if not isinstance(globus, dict) or set(globus) - _GLOBUS_KEYS:
        raise ValueError(f"config.globus: expected an object with {' and/or '.join(sorted(_GLOBUS_KEYS))}")
    if "globus_apps" in globus:
        notes.append("config.globus.globus_apps: ignored (credentials live in Airflow Connections)")
    named = globus.get("globus_endpoints")
    named = {} if named is None else named
    if not isinstance(named, dict):
        raise ValueError("config.globus.globus_endpoints: expected an object of endpoints by name")
    checked, mismatched = [], []
    for name, entry in sorted(named.items()):
        if name not in endpoints:
            continue
        if not isinstance(entry, dict):
            raise ValueError(f"config.globus.globus_endpoints.{name}: expected an object with uuid and root_path")
        ours = endpoints[name]
        theirs = (str(entry.get("uuid", "")).strip().lower(), _root(entry.get("root_path")))
        if theirs != (ours.uuid.lower(), _root(ours.root)):
            mismatched.append(f"{name} (caller: {theirs[0]}:{theirs[1]}; here: {ours.uuid}:{_root(ours.root)})")
        else:
            checked.append(name)
    if mismatched:
        raise ValueError(
            "config.globus.globus_endpoints names endpoints that are elsewhere in this deployment: "
            f"{'; '.join(mismatched)}. Nothing was started (include/config/endpoints.yaml decides where data goes)"
        )
    if named:
        ignored = len(named) - len(checked)
        notes.append(
            f"config.globus.globus_endpoints: {len(checked)} endpoint(s) agree with this deployment"
            + (f", {ignored} not used here (ignored)" if ignored else "")
        )
    return notes


def read_export_control(conf: dict[str, Any], declared: set[str] | frozenset[str]) -> tuple[bool | None, list[str]]:
    """``is_export_controlled`` as the caller meant it: ``(value or None when not given, notes)``.

    ``is_export_control`` (upstream's name) is read as ``is_export_controlled`` where the DAG has that
    setting; both given with different values is refused. A DAG without the setting (it has no
    export-controlled mode) refuses ``is_export_control: true`` and ignores ``false``.
    """
    if EXPORT_CONTROL_ALIAS not in conf:
        return None, []
    value = conf[EXPORT_CONTROL_ALIAS]
    if not isinstance(value, bool):
        raise ValueError(f"{EXPORT_CONTROL_ALIAS} must be true or false, got {value!r}")
    if EXPORT_CONTROLLED not in declared:
        if value:
            raise ValueError(
                f"{EXPORT_CONTROL_ALIAS} is true, but this DAG has no export-controlled mode (it would move the "
                "scan off-site): nothing was started"
            )
        return None, [f"{EXPORT_CONTROL_ALIAS}: false (this DAG has no export-controlled mode)"]
    if EXPORT_CONTROLLED in conf and conf[EXPORT_CONTROLLED] != value:
        raise ValueError(
            f"{EXPORT_CONTROL_ALIAS}={value} and {EXPORT_CONTROLLED}={conf[EXPORT_CONTROLLED]} disagree; "
            "send one of them"
        )
    return value, [f"{EXPORT_CONTROL_ALIAS} (upstream's name) read as {EXPORT_CONTROLLED}={str(value).lower()}"]
