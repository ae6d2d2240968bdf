"""Issue 23 finding 7: a run's outputs are listed in the log of its last task (what the UI opens), not only in
XCom: ``finish`` of each pipeline and the dispatcher's ``report``."""

from __future__ import annotations

from types import SimpleNamespace as NS

OUTPUTS = [
    {"endpoint": "data832_scratch", "path": "BLS-00564_x/local/rec20230224_132553_sea_shell"},
    {"endpoint": "data832_scratch", "path": "BLS-00564_x/local/rec20230224_132553_sea_shell.zarr"},
]
LINES = [f"output: data832_scratch:{o['path']}" for o in OUTPUTS]


def test_i23_finding_7_finish_lists_the_outputs_it_publishes(capsys):
    from dags.pipelines.steps import publish_outputs

    pushed = {}
    ti = NS(xcom_push=lambda key, value: pushed.update({key: value}))
    assert publish_outputs(ti, OUTPUTS) == OUTPUTS
    assert pushed == {"outputs": OUTPUTS}
    assert capsys.readouterr().out.splitlines() == ["outputs: 2", *LINES]


def test_i23_finding_7_the_dispatchers_report_lists_every_pipelines_outputs(capsys):
    from dags.pipelines.steps import report

    def xcom_pull(task_ids, key):
        return {("plan", "chosen"): ["new_file", "local"], ("local.finish", "outputs"): OUTPUTS}.get((task_ids, key))

    ti = NS(
        xcom_pull=xcom_pull,
        get_task_states=lambda **_: {"r": {}},
        task=NS(dag=NS(get_task=lambda task_id: None)),
    )
    result = report.function(["new_file", "local"], ti=ti, dag_run=NS(dag_id="bl832_dispatcher", run_id="r"))
    assert result == {"pipelines": ["new_file", "local"], "outputs": OUTPUTS}
    assert capsys.readouterr().out.splitlines() == [*LINES, "all chosen pipelines succeeded: new_file, local"]
