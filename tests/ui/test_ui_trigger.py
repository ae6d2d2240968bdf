"""The UI as a person uses it: headless Chromium signs in to the Airflow UI of the real stack, triggers
``bl832_dispatcher`` from its Params form on a fresh scan, and watches the run page until it shows Success.

The browser part is tests/ui/trigger_dispatcher.mjs (playwright-core driving Debian's chromium, installed by
.ci/install-browser.sh); this test starts the stack, writes the scan, runs the browser and checks over the
REST API that the run it saw is the one the form asked for. The screenshot of the successful run is
tests/ui/artifacts/bl832_dispatcher_success.png.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from facility.process import free_port
from include.endpoints import REPO_ROOT
from tools.demo import write_demo_scan
from tools.local_stack import LocalStack

pytestmark = pytest.mark.e2e

UI_DIR = Path(__file__).parent
SCRIPT = UI_DIR / "trigger_dispatcher.mjs"
SCREENSHOT = UI_DIR / "artifacts" / "bl832_dispatcher_success.png"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
DATABASE = f"als_ui_{os.getpid()}_{secrets.token_hex(4)}"  # this session only: dropped at its end
DAG_ID = "bl832_dispatcher"
RUN_TIMEOUT = 420


def _missing_browser() -> str | None:
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} not found"
    if shutil.which("node") is None:
        return "node not found"
    if not (UI_DIR / "node_modules" / "playwright-core").is_dir():
        return "playwright-core not installed in tests/ui"
    return None


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if reason := _missing_browser():
        # CI installs the browser (.ci/install-browser.sh): there a missing browser is a failure, not a skip.
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"{reason}: run .ci/install-browser.sh")
    local = LocalStack(tmp_path_factory.mktemp("ui-stack"), port=free_port(), database=DATABASE)
    with local.running(timeout=300):
        yield local


@pytest.mark.timeout(900)
def test_trigger_dispatcher_from_the_ui_and_see_it_succeed(stack):
    scan = write_demo_scan(stack.facility_root)
    for stale in (SCREENSHOT, SCREENSHOT.with_suffix(".failure.png")):
        stale.unlink(missing_ok=True)
    env = {
        **os.environ,
        "AIRFLOW_UI_URL": stack.ui_url,
        "AIRFLOW_USERNAME": stack.username,
        "AIRFLOW_PASSWORD": stack.password,
        "SCAN_PATH": scan,
        "SCREENSHOT": str(SCREENSHOT),
        "RUN_TIMEOUT_SECONDS": str(RUN_TIMEOUT),
        "CHROMIUM": CHROMIUM,
    }
    browser = subprocess.run(
        ["node", str(SCRIPT)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT + 120
    )
    print(browser.stderr)  # the browser's steps, shown by pytest on failure
    assert browser.returncode == 0, f"the browser run failed (stack logs: {stack.log_dir}):\n{browser.stderr[-3000:]}"
    seen = json.loads(browser.stdout.strip().splitlines()[-1])
    assert seen["state"] == "Success"
    assert SCREENSHOT.stat().st_size > 20_000, "the screenshot is missing or blank"

    # The REST API agrees: the run the browser watched succeeded, was triggered by the UI's user from the
    # form with the values the browser entered (send_to_nersc switched off), and its report ran.
    run = stack.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{seen['run_id']}").json()
    assert run["state"] == "success"
    assert run["run_type"] == "manual"
    assert run["triggering_user_name"] == stack.username
    defaults = {"recon": {}, "force": False, "num_nodes": 1}  # the form sends every field, defaults included
    assert run["conf"] == {"file_path": scan, "is_export_controlled": False, "send_to_nersc": False, **defaults}
    states = {ti["task_id"]: ti["state"] for ti in stack.task_instances(DAG_ID, seen["run_id"])}
    assert states["report"] == "success", f"report {states['report']}: the run's success says nothing without it"
    assert not [task for task, state in states.items() if state in ("failed", "upstream_failed")], states
    # the switch took effect: the scan reached data832 but was neither copied to NERSC nor reconstructed there
    assert states["new_file.spot832_to_data832"] == "success"
    assert states["new_file.data832_to_nersc832"] == "skipped"
    assert states["nersc.reconstruct"] == "skipped"
