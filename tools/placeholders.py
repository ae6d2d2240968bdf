"""List every value still to replace before going live (docs/deploy.md), with its file and key.

Reads include/config/*.yaml and airflow_settings.yaml and prints one line per remaining placeholder:
``<file>: <key>: <what> -> <fix>``, tagged ``[production]`` when the production profile would use it and
``[local only]`` when only ``astro dev``/the local runner read it (production sets connections in its secrets
backend). A placeholder that only a disabled site (sites.yaml ``enabled: false``) uses is shown as ``[unused]``.
Exit status 1 while any ``[production]`` line remains, else 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from include.config_files import load_config
from include.endpoints import REPO_ROOT
from include.signing import CONN_ID as SIGNING_CONN_ID
from include.signing import PLACEHOLDER_PREFIX
from include.slurm import _PLACEHOLDER_DIGEST

CONFIG_DIR = REPO_ROOT / "include" / "config"
SETTINGS_FILE = REPO_ROOT / "airflow_settings.yaml"
#: The folder name standing for a project id in an endpoint root (e.g. OLCF's /lustre/orion/PROJECT/...).
PROJECT_MARKER = "PROJECT"
#: Values of airflow_settings.yaml that only the local facility accepts.
LOCAL_MARKERS = ("127.0.0.1", "localhost", "local-client", "local-secret", "local-sftp-password", "LOCAL")
SITE_ENDPOINT_KEYS = ("source_endpoint", "raw_endpoint", "scratch_endpoint", "archive_endpoint")
#: What production's dispatcher runs: upstream's decision-settings (als-computing/splash_flows at 1648452,
#: scripts/create_832_variable_blocks.py:19-23: new file and NERSC on, ALCF off); every other pipeline off.
DISPATCHER_VARIABLE = "bl832_dispatcher_settings"
PRODUCTION_DISPATCH = {"new_file": True, "nersc": True}


@dataclass(frozen=True)
class Placeholder:
    file: str
    key: str
    what: str
    fix: str
    scope: str  # production | local only | unused

    def __str__(self) -> str:
        return f"[{self.scope}] {self.file}: {self.key}: {self.what} -> {self.fix}"


def _read(path: Path) -> dict:
    document = load_config(path).data or {}
    if not isinstance(document, dict):
        raise SystemExit(f"{path}: not a mapping")
    return document


def _unused_endpoints(sites: dict) -> set[str]:
    """Endpoints that only disabled sites name (no enabled site does)."""
    used, disabled = set(), set()
    for entry in sites.values():
        names = {entry.get(key) for key in SITE_ENDPOINT_KEYS if entry.get(key)}
        (used if entry.get("enabled", True) else disabled).update(names)
    return disabled - used


def config_placeholders(config_dir: Path = CONFIG_DIR) -> list[Placeholder]:
    """Placeholders of include/config: collection uuids, project folders, Compute ids, the container digest."""
    found: list[Placeholder] = []
    sites = _read(config_dir / "sites.yaml").get("sites") or {}
    unused = _unused_endpoints(sites)
    endpoints_doc = _read(config_dir / "endpoints.yaml")
    collections = endpoints_doc.get("collections") or {}
    endpoints = endpoints_doc.get("endpoints") or {}
    for name, entry in collections.items():
        if entry.get("placeholder"):
            on = [e for e, spec in endpoints.items() if spec.get("collection") == name]
            scope = "unused" if on and set(on) <= unused else "production"
            found.append(
                Placeholder(
                    "include/config/endpoints.yaml",
                    f"collections.{name}.uuid",
                    f"{entry.get('uuid')} is not the real collection's id",
                    "set the Globus collection id and remove `placeholder: true`",
                    scope,
                )
            )
    for name, spec in endpoints.items():
        if PROJECT_MARKER in str(spec.get("root", "")).split("/"):
            found.append(
                Placeholder(
                    "include/config/endpoints.yaml",
                    f"endpoints.{name}.root",
                    f"{spec['root']} has the folder {PROJECT_MARKER}",
                    "replace it with the project id",
                    "unused" if name in unused else "production",
                )
            )
    for name, entry in sites.items():
        if entry.get("placeholder"):
            scope = "production" if entry.get("enabled", True) else "unused"
            found.append(
                Placeholder(
                    "include/config/sites.yaml",
                    f"sites.{name}.compute_endpoint_id",
                    f"{entry.get('compute_endpoint_id')} is not the real endpoint's id",
                    "set the id (`globus-compute-endpoint list` at the site) and "
                    "remove `placeholder: true`, or set `enabled: false`",
                    scope,
                )
            )
    image = ((_read(config_dir / "nersc.yaml").get("production") or {}).get("container") or {}).get("image", "")
    if str(image).endswith(_PLACEHOLDER_DIGEST):
        found.append(
            Placeholder(
                "include/config/nersc.yaml",
                "production.container.image",
                "the all-zero digest",
                "pin the deployed image's digest (podman-hpc images --digests)",
                "production",
            )
        )
    return found


def settings_placeholders(path: Path = SETTINGS_FILE) -> list[Placeholder]:
    """Connections of airflow_settings.yaml with a placeholder or a local-facility value (``astro dev`` only), and
    dispatcher settings that run more than production does."""
    found: list[Placeholder] = []
    name = path.name
    for conn in (_read(path).get("airflow") or {}).get("connections") or []:
        conn_id = conn.get("conn_id")
        password = str(conn.get("conn_password") or "")
        if conn_id == SIGNING_CONN_ID and password.startswith(PLACEHOLDER_PREFIX):
            found.append(
                Placeholder(
                    name,
                    f"connections.{conn_id}.conn_password",
                    "the placeholder key (refused as a key)",
                    "a random password: openssl rand -hex 32 (production: in the secrets backend)",
                    "local only",
                )
            )
            continue
        fields = {k: v for k, v in conn.items() if k.startswith("conn_") and k not in ("conn_id", "conn_description")}
        local = sorted(k for k, v in fields.items() if any(m in str(v) for m in LOCAL_MARKERS))
        if local:
            found.append(
                Placeholder(
                    name,
                    f"connections.{conn_id}",
                    f"local-facility values in {', '.join(local)}",
                    "production sets this connection in its secrets backend (docs/deploy.md)",
                    "local only",
                )
            )
    for variable in (_read(path).get("airflow") or {}).get("variables") or []:
        if variable.get("variable_name") != DISPATCHER_VARIABLE:
            continue
        extra = sorted(
            k for k, on in json.loads(variable["variable_value"]).items() if on and k not in PRODUCTION_DISPATCH
        )
        if extra:
            found.append(
                Placeholder(
                    name,
                    f"variables.{DISPATCHER_VARIABLE}",
                    f"{', '.join(extra)} on (the local demo)",
                    f"production: {json.dumps(PRODUCTION_DISPATCH)}, every other pipeline false "
                    "(upstream's decision-settings; docs/operations.md)",
                    "local only",
                )
            )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.placeholders", description=__doc__.splitlines()[0])
    parser.add_argument("--config-dir", type=Path, default=CONFIG_DIR)
    parser.add_argument("--settings", type=Path, default=SETTINGS_FILE)
    args = parser.parse_args(argv)
    found = config_placeholders(args.config_dir) + settings_placeholders(args.settings)
    for placeholder in found:
        print(placeholder)
    blocking = sum(p.scope == "production" for p in found)
    print(f"{blocking} placeholder(s) left in the production profile", file=sys.stderr)
    return 1 if blocking else 0


if __name__ == "__main__":
    sys.exit(main())
