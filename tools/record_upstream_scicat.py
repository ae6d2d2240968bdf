"""Record the documents upstream's SciCat ingester sends for our test inputs (tests/fixtures/upstream_scicat/).

  inputs     write the input files (two 8.3.2 scans, a 7.3.3 run) into the fixture folder's inputs/
  record     run upstream's ingester on each case against a local recorder; write <case>.json beside them

``record`` drives upstream's own ``scicat_beamline.ingest.ingest`` (als-computing/scicat_beamline at the
pinned commit, checked out outside this repository) in a subprocess of that checkout's Python environment;
nothing of upstream's is copied here. The ingester records the folder of the path it is given, so the inputs
are put where the beamline's paths are (``/global/raw/<folder>``, upstream's 8.3.2 path;
``/global/beamline_staging/bl733/raw/<folder>``, upstream's 7.3.3 beegfs path): run it as root on a
throw-away machine or container. It removes what it put there. The fixture folder's README.md has the steps.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tools._cli import REPO_ROOT, ToolError, parser, run, say

PROG = "record_upstream_scicat"
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "upstream_scicat"
CASES = FIXTURES / "cases.json"
UPSTREAM = {
    "repository": "als-computing/scicat_beamline",
    "commit": "4828273f5f49ba4eba5442728729e0545b3f5b79",
    "caller": "als-computing/splash_flows 164845279ff6f84f878ed63f7ca4f1fec335acaf",
}
#: Calls upstream's entry point as splash_flows' scicat_ingest_flow does (orchestration/flows/scicat/ingest.py).
DRIVER = """
import json, sys
from pathlib import Path
from scicat_beamline.ingest import ingest
a = json.loads(sys.argv[1])
print(json.dumps(ingest(dataset_path=Path(a["path"]), ingester_spec=a["spec"], owner_username=None,
    scicat_url=a["url"], scicat_username="ingestor", scicat_password="recorder", logger=None)))
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_inputs() -> None:
    """The inputs: the golden tests' 8.3.2 scan, one with the awkward values beamline software writes, and a
    7.3.3 run (two exposures and a test shot that upstream skips)."""
    import h5py
    import numpy as np

    from compute_functions.sample_scan import write_sample_scan
    from facility.scicat_samples import add_832_metadata, write_saxs_exposure

    inputs = FIXTURES / "inputs"
    shutil.rmtree(inputs, ignore_errors=True)
    folder = inputs / "BLS-00564_dyparkinson"
    add_832_metadata(write_sample_scan(folder / "20230224_132553_sea_shell.h5", size="tiny"))
    odd = add_832_metadata(
        write_sample_scan(folder / "20230224_140102_no_proposal.h5", size="tiny", seed=1), beamline=' "BL832", '
    )
    with h5py.File(odd, "a") as f:
        for key, value in {
            "/measurement/sample/experiment/proposal": b"None",
            "/measurement/sample/experimenter/email": b' "DYParkinson@lbl.gov", ',
        }.items():
            del f[key]
            f[key] = np.array([value])
        for key in ("/measurement/sample/experiment/pi", "/measurement/instrument/instrument_name"):
            del f[key]
        key = "/measurement/instrument/detector/temperature"  # a resizable 1-element dataset
        del f[key]
        f.create_dataset(key, data=[21.4], maxshape=(None,))
    saxs = inputs / "ALS-07330_saxs"
    for seed, stem in enumerate(("texas_B19_2_3_2m_00001", "texas_kapton_ctrl_2m_00002", "autoexpose_00003")):
        write_saxs_exposure(saxs, stem, seed=seed)


class Recorder(ThreadingHTTPServer):
    """A SciCat API that accepts everything and keeps each request but the login (it carries the password)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RecorderHandler)
        self.requests: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api/v3"


class RecorderHandler(BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")
        path = self.path.split("?")[0].removeprefix("/api/v3/")
        if path == "auth/login":
            answer: dict[str, Any] = {"id": "recorder-token", "access_token": "recorder-token"}
        else:
            n = len(self.server.requests)
            self.server.requests.append({"method": "POST", "path": path, "body": body})
            answer = {**body, "pid": f"upstream/dataset-{n}"} if path == "Datasets" else {**body, "_id": f"obj-{n}"}
        data = json.dumps(answer).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def place(case: dict[str, Any]) -> list[Path]:
    """Copy the case's inputs to where upstream reads them, with the case's mtime; return what was made."""
    made: list[Path] = []
    for rel in case["inputs"]:
        target = Path(case["beamline_folder"]) / Path(rel).name
        for parent in reversed(target.parents):
            if not parent.exists():
                parent.mkdir()
                made.append(parent)
        shutil.copyfile(FIXTURES / "inputs" / rel, target)
        os.utime(target, (case["mtime"], case["mtime"]))
        made.append(target)
    return made


def record(upstream: Path, python: Path) -> None:
    cases = json.loads(CASES.read_text())
    for case in cases:
        for rel, digest in case["sha256"].items():
            if sha256(FIXTURES / "inputs" / rel) != digest:
                raise ToolError(f"inputs/{rel} does not match its sha256 in {CASES.name}; run 'inputs' and update it")
        made = place(case)
        server = Recorder()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            arg = {"path": case["dataset_path"], "spec": case["ingester"], "url": server.url}
            env = {**os.environ, "PYTHONPATH": str(upstream / "src"), "TZ": "UTC", "MPLBACKEND": "Agg"}
            done = subprocess.run(
                [str(python), "-c", DRIVER, json.dumps(arg)], env=env, capture_output=True, text=True, timeout=600
            )
            if done.returncode or "Error running ingester" in done.stderr or "dataset_id" not in done.stdout:
                raise ToolError(f"{case['name']}: upstream's ingester failed: {done.stderr[-2000:]}")
        finally:
            server.shutdown()
            server.server_close()
            log = Path(case["beamline_folder"]) / "scicat_ingest_log.log"
            for path in [log, *reversed(made)]:
                if path.is_dir():
                    path.rmdir()
                elif path.exists():
                    path.unlink()
        out = {"upstream": UPSTREAM, **case, "requests": server.requests}
        (FIXTURES / f"{case['name']}.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
        say(f"{case['name']}: {len(server.requests)} request(s) recorded")


def main(argv: list[str] | None = None) -> int:
    args_parser = parser(PROG, __doc__)
    args_parser.add_argument("command", choices=("inputs", "record"))
    args_parser.add_argument("--upstream", type=Path, default=Path("/tmp/upstream_scicat"), help="its checkout")
    args_parser.add_argument(
        "--python", type=Path, default=Path("/tmp/upstream_venv/bin/python"), help="its environment's python"
    )
    args = args_parser.parse_args(argv)

    def body() -> None:
        if args.command == "inputs":
            write_inputs()
            for path in sorted((FIXTURES / "inputs").rglob("*")):
                if path.is_file():
                    say(f"{path.relative_to(FIXTURES / 'inputs')} {sha256(path)}")
        else:
            record(args.upstream, args.python)

    return run(PROG, body, str)


if __name__ == "__main__":
    sys.exit(main())
