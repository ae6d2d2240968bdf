"""The Globus flows of this project (include/config/flows/<name>.json) and the command that registers them.

``python -m include.flows_registry [--conn-id ID] [--only NAME ...] [--json]`` creates each flow as the
client of the Airflow connection (default ``globus_default``), or updates the client's own flow of the
same title (so running it again changes no ids), and prints ``<name> <flow id>`` per line. A DAG starts a
flow with ``GlobusFlowOperator(flow_id=...)``; keep the ids in a Variable (docs/operations.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

FLOWS_DIR = Path(__file__).resolve().parent / "config" / "flows"
_KEYS = {"title", "subtitle", "description", "definition", "input_schema"}


def flow_documents(names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """name -> flow document of every file in include/config/flows (or the named ones), checked for keys."""
    found = {path.stem: path for path in sorted(FLOWS_DIR.glob("*.json"))}
    unknown = set(names or []) - set(found)
    if unknown:
        raise ValueError(f"unknown flow(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(found))})")
    documents = {}
    for name in names or list(found):
        document = json.loads(found[name].read_text())
        missing = {"title", "definition", "input_schema"} - set(document)
        extra = set(document) - _KEYS
        if missing or extra:
            raise ValueError(f"{found[name]}: missing {sorted(missing)} / unknown {sorted(extra)} keys")
        documents[name] = document
    return documents


def register_all(hook: Any, names: list[str] | None = None) -> dict[str, tuple[str, bool]]:
    """Deploy the flows through a GlobusFlowsHook; returns name -> (flow id, created)."""
    return {
        name: hook.deploy_flow(
            document["title"],
            document["definition"],
            document["input_schema"],
            subtitle=document.get("subtitle", ""),
            description=document.get("description", ""),
        )
        for name, document in flow_documents(names).items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.flows_registry", description=__doc__.split("\n")[0])
    parser.add_argument("--conn-id", default="globus_default", help="Airflow connection to use")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="register only these flows")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    args = parser.parse_args(argv)

    from include.tools._cli import prepare

    prepare()  # plugins/ on sys.path; Airflow's logs on stderr, so stdout carries only the ids
    from als_provider.hooks.globus_flows import GlobusFlowsHook, describe_flows_error

    try:
        deployed = register_all(GlobusFlowsHook(args.conn_id, max_retries=2), args.only)
    except Exception as exc:
        print(f"error: flow registration failed: {describe_flows_error(exc)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({name: flow_id for name, (flow_id, _) in deployed.items()}, indent=2))
    else:
        for name, (flow_id, created) in deployed.items():
            print(f"{name} {flow_id}")
            print(f"{name}: {'created' if created else 'updated'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
