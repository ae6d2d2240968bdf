"""SciCatHook against the SciCat stand-in: real pyscicat over HTTP, faults injected in the facility."""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from pathlib import Path

import h5py
import numpy as np
import pytest

from als_provider.hooks.scicat import SciCatAuthError, SciCatError, SciCatHook
from compute_functions.sample_scan import write_sample_scan
from facility.process import free_port
from facility.state import LOCAL_CLIENT_SECRET
from include.scicat_metadata import EMAIL, thumbnail_png

TOOTH = Path("/work/shared/data/tooth.h5")


@pytest.fixture(scope="module")
def template_scan(tmp_path_factory) -> Path:
    return write_sample_scan(tmp_path_factory.mktemp("scan") / "20230224_132553_sea_shell.h5", size="tiny")


@pytest.fixture
def scan(template_scan, tmp_path) -> Path:
    return Path(shutil.copy(template_scan, tmp_path / template_scan.name))


@pytest.fixture
def folder() -> str:
    """A fresh sourceFolder: the stand-in keeps datasets for the whole session."""
    return f"/data/raw/BLS-{uuid.uuid4().hex[:8]}_dyparkinson"


def hook(**kwargs) -> SciCatHook:
    return SciCatHook(**{"retry_delay": 0.01, "completion_grace": 0.2, **kwargs})


def use_connection(monkeypatch, conn_id: str, url: str, password: str = LOCAL_CLIENT_SECRET) -> None:
    conn = {"conn_type": "generic", "host": url, "login": "ingestor", "password": password}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def test_raw_ingest_of_a_full_scan(facility, scan, folder):
    h = hook()
    pid = h.ingest_raw(scan, folder)
    client = h.get_conn()
    stored = client.datasets_get_one(pid)
    assert stored["type"] == "raw" and stored["datasetName"] == "20230224_132553_sea_shell"
    assert stored["sourceFolder"] == folder and stored["ownerGroup"] == "ALS-11234"
    assert stored["creationLocation"] == "8.3.2 micro-tomography" and stored["contactEmail"] == "DYParkinson@lbl.gov"
    assert stored["sampleId"] == "20230224 132553 sea shell" and stored["accessGroups"] == ["8.3.2"]
    sci = stored["scientificMetadata"]  # keyed by full HDF5 paths, '/' kept (upstream's saved searches)
    assert sci["/measurement/instrument/detector/pixel_size"] == pytest.approx(0.00325)
    assert len(sci["data_sample"]["/measurement/instrument/source/current"]) == 11
    blocks = client.datasets_origdatablocks_get_one(pid)
    assert [[f["path"] for f in b["dataFileList"]] for b in blocks] == [[f"{folder}/{scan.name}"]]  # absolute
    attachments = h.get_conn().get_json(f"Datasets/{pid.replace('/', '%2F')}/attachments", "t")
    assert [a["caption"] for a in attachments] == ["raw image"]
    assert attachments[0]["thumbnail"].startswith("data:image/png;base64,")
    stats = facility.stats()
    assert (stats["scicat.login"], stats["scicat.dataset_created"]) == (1, 1)
    assert (stats["scicat.origdatablock_created"], stats["scicat.attachment_created"]) == (1, 1)


def test_raw_dataset_records_the_true_size_and_file_count(facility, scan, folder):
    """Finding 1: SciCat adds the datablock's size and files to the dataset; the ingest must not set them too."""
    h = hook()
    pid = h.ingest_raw(scan, folder)
    stored = h.get_conn().datasets_get_one(pid)
    assert (stored["size"], stored["numberOfFiles"]) == (scan.stat().st_size, 1)
    hook().ingest_raw(scan, folder)  # a re-run adds no second datablock, so nothing is counted twice
    stored = h.get_conn().datasets_get_one(pid)
    assert (stored["size"], stored["numberOfFiles"]) == (scan.stat().st_size, 1)


def test_refused_documents_report_the_backend_messages(facility, scan, folder, monkeypatch):
    """A 400 from SciCat names the fields as class-validator does, whichever shape the route answers."""
    from include import scicat_metadata

    real = scicat_metadata.build_raw

    def with_bad_email(*args, **kwargs):
        docs = real(*args, **kwargs)
        docs.dataset["contactEmail"] = "not-an-email"
        return docs

    monkeypatch.setattr(scicat_metadata, "build_raw", with_bad_email)
    with pytest.raises(SciCatError, match=r"HTTP 400: contactEmail must be an email$") as raised:
        hook().ingest_raw(scan, folder)
    assert raised.value.status == 400 and not raised.value.transient


def test_a_rerun_finds_the_dataset_it_made(facility, scan, folder):
    first = hook().ingest_raw(scan, folder)
    second = hook().ingest_raw(scan, folder)  # a new task try: new hook, new login
    assert first == second
    stats = facility.stats()
    assert stats["scicat.dataset_created"] == stats["scicat.origdatablock_created"] == 1
    assert stats["scicat.attachment_created"] == 1 and stats["scicat.login"] == 2
    # the same file name in another folder is another scan
    assert hook().ingest_raw(scan, folder + "_other") != first


def test_a_failed_datablock_fails_loudly_and_the_rerun_completes_without_a_second_dataset(facility, scan, folder):
    facility.inject("scicat", status=400, match=r"^POST .*/origdatablocks$", message="refused block")
    with pytest.raises(SciCatError, match="refused block"):
        hook().ingest_raw(scan, folder)
    assert facility.stats()["scicat.dataset_created"] == 1
    pid = hook().ingest_raw(scan, folder)
    stats = facility.stats()
    assert stats["scicat.dataset_created"] == 1 and stats["scicat.origdatablock_created"] == 1
    assert stats["scicat.attachment_created"] == 1
    assert hook().find_raw(folder, scan.stem) == pid


def test_a_failed_thumbnail_is_a_warning_and_a_rerun_adds_it(facility, scan, folder, caplog):
    facility.inject("scicat", status=400, match=r"^POST .*/attachments$", message="no thumbnails today")
    with caplog.at_level(logging.WARNING):
        pid = hook().ingest_raw(scan, folder)
    assert "raw image not attached" in caplog.text and "no thumbnails today" in caplog.text
    assert "scicat.attachment_created" not in facility.stats()
    assert hook().ingest_raw(scan, folder) == pid
    assert facility.stats()["scicat.attachment_created"] == 1


def test_scicat_down_is_retried_then_succeeds(facility, scan, folder, caplog):
    facility.inject("scicat", status=503, match=r"^POST .*/Datasets$", times=3)
    facility.inject("scicat", status=502, match=r"^GET .*/Datasets$", times=1)
    with caplog.at_level(logging.WARNING):
        pid = hook(max_attempts=5).ingest_raw(scan, folder)
    stats = facility.stats()
    assert stats["fault.http.503"] == 3 and stats["fault.http.502"] == 1
    assert stats["scicat.dataset_created"] == 1 and pid
    assert caplog.text.count("HTTP 503") == 3


def test_one_back_off_a_lookup_inside_find_or_create_does_not_retry_on_its_own(facility, scan, folder):
    """Issue 24: one back-off loop; the lookups before a create are attempts of the create's loop, so a dead
    SciCat costs ``max_attempts`` requests, not ``max_attempts`` squared."""
    facility.inject("scicat", status=503, match=r"^GET .*/Datasets$", times=20)
    with pytest.raises(SciCatError, match="HTTP 503"):
        hook(max_attempts=3).ingest_raw(scan, folder)
    assert facility.stats()["fault.http.503"] == 3 and "scicat.dataset_created" not in facility.stats()


def test_too_many_failures_fail_before_the_dataset_exists(facility, scan, folder):
    facility.inject("scicat", status=503, match=r"^POST .*/Datasets$", times=10)
    with pytest.raises(SciCatError, match="HTTP 503") as info:
        hook(max_attempts=3).ingest_raw(scan, folder)
    assert info.value.status == 503 and info.value.transient
    assert facility.stats()["fault.http.503"] == 3 and "scicat.dataset_created" not in facility.stats()


def test_a_lost_create_answer_does_not_make_a_second_dataset(facility, scan, folder):
    facility.inject("scicat", kind="error_after_create", status=504, match=f"^POST Datasets {scan.stem}$")
    pid = hook().ingest_raw(scan, folder)
    assert facility.stats()["scicat.dataset_created"] == 1
    assert facility.stats()["fault.scicat.error_after_create.504"] == 1
    assert hook().find_raw(folder, scan.stem) == pid


def test_a_refused_document_is_not_retried(facility, scan, folder):
    facility.inject("scicat", status=400, match=r"^POST .*/Datasets$", times=5, message="bad document")
    with pytest.raises(SciCatError, match="bad document"):
        hook().ingest_raw(scan, folder)
    assert facility.stats()["fault.http.400"] == 1


def test_an_expired_token_logs_in_again(facility, scan, folder):
    facility.inject("scicat", status=401, match=r"^GET .*/Datasets$", times=1)
    assert hook().ingest_raw(scan, folder)
    assert facility.stats()["scicat.login"] == 2


def test_bad_credentials_give_a_clear_error_without_the_password(facility, monkeypatch, scan, folder):
    use_connection(monkeypatch, "scicat_bad", f"{facility.url}/scicat/api/v3", password="hunter2-secret")
    with pytest.raises(SciCatAuthError) as info:
        hook(scicat_conn_id="scicat_bad").ingest_raw(scan, folder)
    message = str(info.value)
    assert "scicat_bad" in message and "401" in message and "'ingestor'" in message
    assert "hunter2-secret" not in message and info.value.__cause__ is None
    assert "scicat.login" not in facility.stats()


def test_unreachable_scicat_fails_after_retries(monkeypatch, scan, folder):
    use_connection(monkeypatch, "scicat_nowhere", f"http://127.0.0.1:{free_port()}/scicat/api/v3")
    with pytest.raises(SciCatError, match="ConnectionError") as info:
        hook(scicat_conn_id="scicat_nowhere", max_attempts=2).ingest_raw(scan, folder)
    assert info.value.status is None and LOCAL_CLIENT_SECRET not in str(info.value)


def test_the_token_never_reaches_the_logs_or_errors(facility, scan, folder, caplog):
    h = hook()
    facility.inject("scicat", status=503, match=r"^GET .*/origdatablocks$", times=1)
    with caplog.at_level(logging.DEBUG):
        pid = h.ingest_raw(scan, folder)
        with pytest.raises(SciCatError) as info:
            h.get_dataset(pid + "-missing")
    token = h.get_conn()._token
    assert len(token) > 20
    assert "access_token=***" in caplog.text  # urllib3 logged the URLs, redacted
    assert token not in caplog.text and LOCAL_CLIENT_SECRET not in caplog.text
    assert info.value.status == 404 and token not in str(info.value)


def test_missing_optional_keys_are_warnings_and_still_ingested(facility, tmp_path, caplog):
    path = Path(shutil.copy(TOOTH, tmp_path / "tooth.h5"))
    with caplog.at_level(logging.WARNING):
        pid = hook().ingest_raw(path, f"/data/raw/aps-{uuid.uuid4().hex[:8]}")
    assert "optional key(s) missing" in caplog.text and "/measurement/sample/experiment/pi" in caplog.text
    stored = hook().get_dataset(pid)
    assert stored["ownerGroup"] == "8.3.2" and stored["principalInvestigator"] == "Unknown"
    assert facility.stats()["scicat.attachment_created"] == 1


def test_bad_email_is_a_warning_and_the_fallback_is_used(facility, scan, folder, caplog):
    with h5py.File(scan, "a") as f:
        del f[EMAIL]
        f[EMAIL] = np.array([b"Dula Parkinson"])
    with caplog.at_level(logging.WARNING):
        pid = hook().ingest_raw(scan, folder, fallback_email="bl832@example.org")
    assert "is not an email" in caplog.text
    assert hook().get_dataset(pid)["contactEmail"] == "bl832@example.org"


def make_results(root: Path, dataset: str, slices: int = 3, size: int = 100, seed: int = 0) -> Path:
    """A reconstruction's results under ``root``, in place of any earlier ones (a re-reconstruction gives another
    slice count, sizes and preview): ``slices`` TIFFs of ``size`` bytes, a Zarr store; returns the preview."""
    shutil.rmtree(root, ignore_errors=True)
    (root / f"rec{dataset}").mkdir(parents=True)
    for i in range(slices):
        (root / f"rec{dataset}" / f"{dataset}_{i:05d}.tiff").write_bytes(b"\1" * size)
    (root / f"rec{dataset}.zarr").mkdir()
    (root / f"rec{dataset}.zarr" / "zarr.json").write_text('{"zarr_format": 3}')
    preview = root / "preview.png"
    preview.write_bytes(thumbnail_png(np.random.default_rng(seed).random((32, 32)) + 1))
    return preview


def derived_args(scan: Path, folder: str, site: str, local: Path) -> dict:
    """ingest_derived's arguments for ``site``'s results of ``scan`` (held locally in ``local``), but for the
    reconstruction's parameters and preview."""
    results = f"/data/scratch/globus_share/{folder.rsplit('/', 1)[1]}/{site}"
    return {
        "dataset_name": f"rec{scan.stem}_{site}",
        "source_folder": results,
        "tiff_location": f"{results}/rec{scan.stem}",
        "zarr_location": f"{results}/rec{scan.stem}.zarr",
        "site": site,
        "local_folder": local,
    }


def test_derived_dataset_is_linked_to_the_raw_one_and_idempotent(facility, scan, folder, tmp_path):
    raw_pid = hook().ingest_raw(scan, folder)
    preview = make_results(tmp_path / "alcf", scan.stem)
    parameters = {"engine": "gridrec", "center": 63.2, "filter": "butterworth"}
    args = derived_args(scan, folder, "alcf", tmp_path / "alcf") | {"parameters": parameters, "preview_path": preview}
    results = args["source_folder"]
    pid = hook().ingest_derived(raw_pid, **args)
    assert hook().ingest_derived(raw_pid, **args) == pid
    h = hook()
    derived = h.get_dataset(pid)
    assert derived["type"] == "derived" and derived["inputDatasets"] == [raw_pid]
    assert derived["ownerGroup"] == "ALS-11234" and derived["investigator"] == "Dula Parkinson"
    assert derived["jobParameters"]["center"] == 63.2 and derived["scientificMetadata"]["site"] == "alcf"
    assert derived["scientificMetadata"]["zarr"]["location"] == f"{results}/rec{scan.stem}.zarr"
    files = [f["path"] for b in h.get_conn().datasets_origdatablocks_get_one(pid) for f in b["dataFileList"]]
    assert len(files) == 4 and f"rec{scan.stem}.zarr/zarr.json" in files
    stats = facility.stats()
    assert stats["scicat.dataset_created"] == 2 and stats["scicat.origdatablock_created"] == 2
    assert stats["scicat.attachment_created"] == 2
    # another site's results are another derived dataset of the same scan
    other = dict(args, source_folder=results.replace("alcf", "nersc"), site="nersc", dataset_name="x_nersc")
    assert hook().ingest_derived(raw_pid, **other) != pid


def test_derived_of_an_unknown_raw_dataset_fails_loudly(facility):
    with pytest.raises(SciCatError, match="404"):
        hook().ingest_derived(
            "20.500.12269/nope",
            dataset_name="r",
            source_folder="/s",
            tiff_location="/s/r",
            zarr_location="/s/r.zarr",
            parameters={},
            site="local",
        )
    assert "scicat.dataset_created" not in facility.stats()


def test_connection_test(facility):
    assert hook().test_connection() == (True, "Logged in and listed datasets")


def test_connection_without_a_url_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SCICAT_NOURL", json.dumps({"conn_type": "generic", "login": "a"}))
    with pytest.raises(ValueError, match=r"scicat_nourl.*host"):
        hook(scicat_conn_id="scicat_nourl").get_conn()


def _at_once(n: int, fn) -> list:
    """Run ``fn()`` in ``n`` threads released together; return the results (re-raise the first error)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    gate = threading.Barrier(n)

    def run():
        gate.wait()
        return fn()

    with ThreadPoolExecutor(n) as pool:
        return [f.result() for f in [pool.submit(run) for _ in range(n)]]


def test_i21_finding_6_concurrent_registrations_of_one_scan_make_one_dataset(facility, scan, folder, tmp_path):
    """Mapped catch-up tasks, or a Clear during a catch-up: registrations of one scan at the same moment make
    one raw dataset (SciCat refuses the second create of its pid) with one datablock, and one derived one."""
    pids = _at_once(6, lambda: hook(completion_grace=5).ingest_raw(scan, folder))
    assert len(set(pids)) == 1
    h = hook()
    assert pids[0] == h.pid_for("raw", folder, scan.stem)  # the pid is the scan's, whoever made it
    from als_provider.hooks.scicat import _filter_path

    assert [d["pid"] for d in h.get_conn().get_json(_filter_path({"sourceFolder": folder}), "t")] == pids[:1]
    stats = facility.stats()
    assert stats["scicat.dataset_created"] == 1 and stats["scicat.origdatablock_created"] == 1
    assert stats["scicat.attachment_created"] == 1
    assert h.get_dataset(pids[0])["size"] == scan.stat().st_size  # one datablock counted once

    preview = make_results(tmp_path / "alcf", scan.stem)
    parameters = {"engine": "gridrec"}
    args = derived_args(scan, folder, "alcf", tmp_path / "alcf") | {"parameters": parameters, "preview_path": preview}
    derived = _at_once(4, lambda: hook(completion_grace=5).ingest_derived(pids[0], **args))
    assert len(set(derived)) == 1
    stats = facility.stats()
    assert stats["scicat.dataset_created"] == 2 and stats["scicat.origdatablock_created"] == 2
    assert stats["scicat.attachment_created"] == 2


def test_i21_finding_6_a_create_refused_as_existing_is_read_back_as_success(facility, scan, folder, monkeypatch):
    """The race made deterministic: another registration creates the dataset between our lookup and our
    create; SciCat answers 409 for the pid, and the hook reads the dataset back instead of failing."""
    other = hook()
    pid = other.pid_for("raw", folder, scan.stem)
    h = hook()
    real_find = h.find_dataset
    made = {}

    def lookup_then_race(**kwargs):
        found = real_find(**kwargs)
        if not made:  # the other registration wins right after our lookup
            made["pid"] = other.ingest_raw(scan, folder)
        return found

    monkeypatch.setattr(h, "find_dataset", lookup_then_race)
    assert h.ingest_raw(scan, folder) == pid == made["pid"]
    stats = facility.stats()
    assert stats["scicat.dataset_created"] == 1 and stats["scicat.origdatablock_created"] == 1


def test_i21_finding_6_a_pid_held_by_another_dataset_is_refused(facility, scan, folder):
    """A dataset at our computed pid that is not this scan's is never taken for it (nor overwritten)."""
    h = hook()
    pid = h.pid_for("raw", folder, scan.stem)
    other = {
        "pid": pid,
        "owner": "x",
        "principalInvestigator": "x",
        "contactEmail": "x@example.org",
        "creationLocation": "x",
        "creationTime": "2023-02-24T13:25:53Z",
        "sourceFolder": "/elsewhere",
        "ownerGroup": "g",
        "datasetName": "another",
    }
    from pyscicat.model import RawDataset

    h.get_conn().datasets_create(RawDataset(**other))
    with pytest.raises(SciCatError, match="pid collision"):
        hook().ingest_raw(scan, folder)
    assert h.get_dataset(pid)["datasetName"] == "another"


def test_i21_finding_7_a_re_reconstruction_updates_the_derived_dataset(facility, scan, folder, tmp_path):
    """A re-reconstruction's registration makes the derived dataset describe the new results: size, file list
    (its OrigDatablock replaced, not a second one added), parameters and preview; a re-run changes nothing."""
    raw_pid = hook().ingest_raw(scan, folder)
    local = tmp_path / "nersc"
    args = derived_args(scan, folder, "nersc", local)
    first_preview = make_results(local, scan.stem, slices=3, size=100, seed=0)
    pid = hook().ingest_derived(raw_pid, parameters={"center": 60.0}, preview_path=first_preview, **args)
    first = hook().get_dataset(pid)
    assert (first["size"], first["numberOfFiles"]) == (3 * 100 + 18, 4)

    preview = make_results(local, scan.stem, slices=5, size=300, seed=1)  # reconstructed again, new centre
    assert hook().ingest_derived(raw_pid, parameters={"center": 63.5}, preview_path=preview, **args) == pid
    h = hook()
    now = h.get_dataset(pid)
    new_size = 5 * 300 + len('{"zarr_format": 3}')
    assert (now["size"], now["numberOfFiles"]) == (new_size, 6)
    assert now["jobParameters"] == {"center": 63.5} and now["scientificMetadata"]["reconstruction"]["center"] == 63.5
    blocks = h.get_conn().datasets_origdatablocks_get_one(pid)
    assert len(blocks) == 1 and blocks[0]["size"] == new_size
    assert sorted(f["path"] for f in blocks[0]["dataFileList"]) == sorted(
        [f"rec{scan.stem}/{scan.stem}_{i:05d}.tiff" for i in range(5)] + [f"rec{scan.stem}.zarr/zarr.json"]
    )
    previews = h.get_conn().get_json(f"Datasets/{pid.replace('/', '%2F')}/attachments", "t")
    from include.scicat_metadata import _png_bytes, data_url_png

    assert [a["thumbnail"] for a in previews] == [data_url_png(_png_bytes(preview))]
    stats = facility.stats()
    assert stats["scicat.dataset_created"] == 2 and stats["scicat.origdatablock_created"] == 2
    assert stats["scicat.dataset_updated"] == 1 and stats["scicat.origdatablock_updated"] == 1

    assert hook().ingest_derived(raw_pid, parameters={"center": 63.5}, preview_path=preview, **args) == pid
    assert facility.stats()["scicat.dataset_updated"] == 1  # nothing changed: nothing sent
    assert facility.stats()["scicat.attachment_updated"] == 1
