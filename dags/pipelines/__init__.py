"""DAG-building code shared by the DAG files of dags/: step builders, Params, DAG ids.

Imported as ``dags.pipelines.<module>`` (the repository root is on sys.path). Not DAG files: the DAG
processor skips this folder (dags/.airflowignore).
"""
