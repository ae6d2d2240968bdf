"""Issue 23 finding 2: a SciCat step that fails on its input (the file, its metadata, a record SciCat refuses)
says so in XCom ``input_error``; one that fails because SciCat is down or refuses the login does not."""

from __future__ import annotations

import uuid

import pytest

from als_provider.hooks.scicat import SciCatAuthError, SciCatError, SciCatHook
from als_provider.operators.scicat import INPUT_ERROR_KEY, SciCatIngestRawOperator
from tests.dags.dag_helpers import write_scan

pytestmark = pytest.mark.usefixtures("airflow_db")


class FakeTI:
    def __init__(self) -> None:
        self.pushed: dict = {}

    def xcom_push(self, key: str, value) -> None:
        self.pushed[key] = value


def test_i23_finding_2_a_missing_file_is_the_steps_own_error():
    ti = FakeTI()
    with pytest.raises(FileNotFoundError):
        SciCatIngestRawOperator(task_id="t", file_path="BLS-00001_x/none.h5").execute(context={"ti": ti})
    assert ti.pushed[INPUT_ERROR_KEY].startswith("FileNotFoundError: BLS-00001_x/none.h5 is not on data832_raw")


@pytest.mark.parametrize(
    ("error", "input_error"),
    [
        (SciCatError("SciCat POST Datasets: ConnectTimeout: timed out"), False),
        (SciCatError("SciCat POST Datasets: HTTP 503: unavailable", 503), False),
        (SciCatAuthError("SciCat login: HTTP 401: Unauthorized", 401), False),
        (SciCatError("SciCat POST Datasets: HTTP 400: scanParameters must be an object", 400), True),
        (KeyError("/measurement/instrument/detector"), True),
    ],
)
def test_i23_finding_2_only_scicat_being_down_is_owed_to_scicat(local_endpoints, monkeypatch, error, input_error):
    scan = f"BLS-{uuid.uuid4().hex[:5]}_x/20230224_132553_sea_shell.h5"
    write_scan(local_endpoints, "data832_raw", scan)

    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(SciCatHook, "ingest_raw", refuse)
    ti = FakeTI()
    with pytest.raises(type(error)):
        SciCatIngestRawOperator(task_id="t", file_path=scan).execute(context={"ti": ti})
    assert (INPUT_ERROR_KEY in ti.pushed) is input_error
