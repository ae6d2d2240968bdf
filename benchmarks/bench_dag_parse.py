"""How long each DAG file takes to parse, side by side with a file that imports the SDKs at top level.

Airflow re-parses a DAG file in every task process, so this cost is paid by every task. Each figure is
the median of ``--repeat`` fresh interpreters that import ``airflow.sdk`` first (its own cost is the same
for every DAG file) and then run the file. The alternative imports globus_sdk, globus_compute_sdk,
sfapi_client, pyscicat, numpy, h5py and ome_zarr at top level, as the DAG files of a careless design would.

    PYTHONPATH=.:plugins .venv/bin/python benchmarks/bench_dag_parse.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEAVY = "import globus_sdk, globus_compute_sdk, sfapi_client, pyscicat, numpy, h5py, ome_zarr"
PROBE = """
import time, runpy, airflow.sdk, airflow.triggers.base, yaml
{pre}
start = time.perf_counter()
{body}
print(time.perf_counter() - start)
"""


def seconds(body: str, repeat: int, pre: str = "") -> float:
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", PROBE.format(pre=pre, body=body)],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        runs.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    heavy = seconds(HEAVY, args.repeat)
    print(f"{'DAG file':32} {'parse s':>8} {'+ SDKs at top level s':>22} {'ratio':>6}")
    for dag_file in sorted((REPO / "dags").glob("*.py")):
        ours = seconds(f"runpy.run_path({str(dag_file)!r})", args.repeat)
        print(f"{dag_file.name:32} {ours:8.3f} {ours + heavy:22.3f} {(ours + heavy) / ours:6.1f}x")


if __name__ == "__main__":
    main()
