"""Register the Globus Compute functions and print their ids.

``python -m tools.register_functions [--conn-id ID] [--only NAME ...] [--json]`` registers every
function of ``include.compute_registry.FUNCTIONS`` with Globus Compute as the client of the Airflow
connection (default ``globus_compute_default``) and prints ``<name> <function id>`` per line. Paste the
ids into a site's ``function_ids`` in include/config/sites.yaml to pin them (needed when an endpoint only
allows listed functions); a site without pinned ids registers the function when a task first submits it.
It replaces the two registration scripts of the current system.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from include.compute_registry import FUNCTIONS, resolve

PROG = "python -m tools.register_functions"


def register_all(hook: Any, names: Sequence[str] | None = None) -> dict[str, str]:
    """Register the named functions (default: all) through a GlobusComputeHook; returns name -> id."""
    return {name: hook.register_function(resolve(name)) for name in (names or list(FUNCTIONS))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--conn-id", default="globus_compute_default", help="Airflow connection to use")
    parser.add_argument("--only", nargs="+", choices=sorted(FUNCTIONS), help="register only these functions")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    args = parser.parse_args(argv)

    plugins = str(Path(__file__).resolve().parents[1] / "plugins")
    if plugins not in sys.path:  # Airflow puts plugins/ on sys.path; a plain `python -m` does not
        sys.path.append(plugins)
    from als_provider.hooks.globus_compute import GlobusComputeHook, describe_compute_error

    # Airflow logs to stdout; stdout carries only the ids.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, force=True)

    try:
        ids = register_all(GlobusComputeHook(args.conn_id), args.only)
    except Exception as exc:
        print(f"error: registration failed: {describe_compute_error(exc)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(ids, indent=2))
    else:
        for name, function_id in ids.items():
            print(f"{name} {function_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
