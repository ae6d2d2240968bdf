"""``make demo``: write a sample scan on spot832 and run the dispatcher on it, on the local profile.

The scan is a small synthetic phantom in the full 8.3.2 layout (compute_functions.sample_scan), named
as the beamline names scans, in a fresh experiment folder under the local facility's spot832. The
dispatcher then moves it, registers it in SciCat, and reconstructs it at ALCF, NERSC and locally. Airflow's
logs go to ``<home>/demo.log``; the demo ends with a short table: the tasks by state, each output, what it
is and how to open it.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from include.endpoints import REPO_ROOT, default_facility_root, load_endpoints
from tools.run_dag import run

DEMO_FOLDER = "BLS-00001_demo"


def write_demo_scan(facility_root: Path, size: str = "tiny") -> str:
    """Write a sample scan where the beamline would; return its path as the beamline reports it."""
    from compute_functions.sample_scan import write_sample_scan

    name = f"{datetime.now(UTC):%Y%m%d_%H%M%S}_demo_phantom.h5"
    target = load_endpoints("local", facility_root=facility_root)["spot832"].posix_path(f"raw/{DEMO_FOLDER}/{name}")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_sample_scan(target, size=size)
    print(f"sample scan: {target}", file=sys.stderr)
    return f"/global/raw/{DEMO_FOLDER}/{name}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny", help="sample scan size: tiny, small, medium, full")
    parser.add_argument("--dag", default="bl832_dispatcher", help="the DAG to run on the scan")
    parser.add_argument("--home", type=Path, default=REPO_ROOT / ".airflow")
    parser.add_argument("--facility-root", type=Path, default=default_facility_root())
    args = parser.parse_args(argv)
    facility_root = args.facility_root.resolve()
    conf = {"file_path": write_demo_scan(facility_root, args.size)}
    print(f"conf: {json.dumps(conf)}", file=sys.stderr)
    home = args.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    log_file = home / "demo.log"
    print(f"running {args.dag} (about 2 minutes; Airflow's log: {log_file})", file=sys.stderr)
    return run(args.dag, conf, home=home, facility_root=facility_root, log_file=log_file)


if __name__ == "__main__":
    sys.exit(main())
