"""SFTPNewScanSensor: wait, deferred, for finished scans on spot832 that the dispatcher has not seen yet."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from als_provider.triggers.sftp_new_scan import SFTPNewScanTrigger
from include.paths import FOLDER_NAME_PATTERN, SCAN_NAME_PATTERN, beamline_path, parse_scan


class SFTPNewScanSensor(BaseSensorOperator):
    """Succeed with one dispatch request per finished, undispatched scan under spot832's raw tree.

    Returns ``[{"trigger_run_id", "conf", "note"}, ...]``: the keyword arguments of one
    ``TriggerDagRunOperator`` per scan (``expand_kwargs``), with the dispatcher's deterministic run id and a
    conf that is exactly its Params. "Finished" and "dispatched" are decided by ``SFTPNewScanTrigger``
    (see docs/watching.md). Always deferrable: the watch runs in the triggerer.

    Export control (include/export_control.py): a scan's ``is_export_controlled`` is true when this task's
    ``is_export_controlled`` is, or when its folder is export-controlled in the folder list (Variable
    ``als_export_control_folders``, read when the watch starts); false only for a released folder. A scan of
    any other folder is held (never dispatched) until an operator says which it is. An export-controlled scan
    is recorded (signed, never downgraded) before its dispatch request is returned.

    :param dispatch_dag_id: the dispatcher DAG: its runs mark a scan as dispatched, and the requests
        returned are for it (the DAG passes it; the provider knows no DAG ids).
    :param sftp_conn_id: SFTP connection of spot832.
    :param raw_root: the raw tree on spot832 (templated; default: connection extra ``raw_root``, else /global/raw).
    :param stable_polls: consecutive listings with the same size and mtime before a scan counts (templated).
    :param poll_interval: seconds between listings (templated).
    :param lookback_hours: only scans modified this recently; 0 watches every scan (templated).
    :param is_export_controlled: true: every dispatched scan is export-controlled; false: each scan's
        status from the folder list (templated).
    :param send_to_nersc: conf of every dispatched scan (templated).
    :param folder_pattern: experiment folder names to watch (default SPEC §1).
    :param file_pattern: scan file names to watch (default SPEC §1).
    :param max_scans: at most this many scans per run.
    """

    template_fields: Sequence[str] = (
        "raw_root",
        "stable_polls",
        "poll_interval",
        "lookback_hours",
        "is_export_controlled",
        "send_to_nersc",
    )

    def __init__(
        self,
        *,
        dispatch_dag_id: str,
        sftp_conn_id: str = "sftp_spot832",
        raw_root: str | None = None,
        stable_polls: int | str = 3,
        poll_interval: float | str = 30.0,
        lookback_hours: float | str = 72.0,
        is_export_controlled: bool | str = False,
        send_to_nersc: bool | str = True,
        folder_pattern: str = FOLDER_NAME_PATTERN,
        file_pattern: str = SCAN_NAME_PATTERN,
        max_scans: int = 32,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("timeout", timedelta(hours=1).total_seconds())
        super().__init__(**kwargs)
        self.sftp_conn_id = sftp_conn_id
        self.raw_root = raw_root
        self.stable_polls = stable_polls
        self.poll_interval = poll_interval
        self.lookback_hours = lookback_hours
        self.is_export_controlled = is_export_controlled
        self.send_to_nersc = send_to_nersc
        self.folder_pattern = folder_pattern
        self.file_pattern = file_pattern
        self.dispatch_dag_id = dispatch_dag_id
        self.max_scans = max_scans

    def poke(self, context: Context) -> bool:
        raise NotImplementedError("SFTPNewScanSensor only runs deferred (the stability check spans polls)")

    def make_trigger(self, export_control: dict[str, Any] | None = None) -> SFTPNewScanTrigger:
        """The trigger for this watch, from the rendered fields (``export_control``: the folder list)."""
        lookback = float(self.lookback_hours) * 3600
        return SFTPNewScanTrigger(
            sftp_conn_id=self.sftp_conn_id,
            raw_root=self.raw_root or None,
            stable_polls=int(self.stable_polls),
            poll_interval=float(self.poll_interval),
            lookback=lookback or None,
            folder_pattern=self.folder_pattern,
            file_pattern=self.file_pattern,
            dispatch_dag_id=self.dispatch_dag_id,
            max_scans=self.max_scans,
            export_control=export_control,
        )

    def folder_list(self) -> dict[str, Any]:
        """What the trigger decides a scan's export control from (include/export_control.py)."""
        from include.export_control import folder_policy

        if _flag(self.is_export_controlled):
            return {"all": True, "controlled": [], "released": []}
        policy = folder_policy()
        for problem in policy.problems:
            self.log.warning("%s", problem)
        return {"all": False, **policy.to_dict()}

    def execute(self, context: Context) -> None:
        # Params let unknown conf keys through; no retry: the conf will not change.
        allowed = set(context["dag"].params)
        unknown = set(context["dag_run"].conf or {}) - allowed
        if unknown:
            raise AirflowFailException(
                f"unknown conf key(s) {', '.join(sorted(unknown))}; this DAG takes {', '.join(sorted(allowed))}"
            )
        trigger = self.make_trigger(self.folder_list())
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timedelta(seconds=self.timeout))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> list[dict[str, Any]]:
        if event.get("status") != "success":
            raise RuntimeError(event.get("message") or f"watching spot832 failed: {event}")
        from include.export_control import mark_controlled

        requests = []
        for found in event["scans"]:
            scan = parse_scan(found["scan"])
            controlled = True if _flag(self.is_export_controlled) else found.get("export_controlled")
            if controlled is None:  # unknown is never "allowed"
                self.log.warning("%s is held: its export control is unknown (docs/watching.md)", scan)
                continue
            if controlled:  # recorded before anything moves; a later run cannot downgrade it
                record = mark_controlled(scan, source=f"{context['dag'].dag_id} (folder list)")
                self.log.info("%s is export-controlled: %s", scan, record.describe())
            self.log.info("finished scan %s (%d bytes): dispatching as %s", scan, found["size"], found["run_id"])
            requests.append(
                {
                    "trigger_run_id": found["run_id"],
                    "conf": {
                        "file_path": beamline_path(scan),
                        "is_export_controlled": controlled,
                        "send_to_nersc": _flag(self.send_to_nersc),
                    },
                    "note": f"Started by {context['dag'].dag_id} for {scan}: {found['checks']}.",
                }
            )
        return requests


def _flag(value: bool | str) -> bool:
    """A templated boolean ("True"/"False" after rendering) as a bool."""
    if isinstance(value, bool):
        return value
    if str(value).strip().lower() in ("true", "1", "yes"):
        return True
    if str(value).strip().lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"not a boolean: {value!r}")
