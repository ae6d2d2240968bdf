"""Operator commands, run as ``python -m tools.<name>`` (see docs/operations.md).

Each reads its credentials from the same Airflow connections the DAGs use (``AIRFLOW_CONN_*`` variables or
the secrets backend), talks to the service through the provider's hooks, exits 0 on success and 1 with a
one-line ``error: ...`` on stderr otherwise. No command ever prints a secret.
"""
