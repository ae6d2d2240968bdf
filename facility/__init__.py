"""The local facility: stand-ins for Globus Auth, Transfer and Compute, SFAPI and SciCat in one process.

A development and test tool that speaks the real wire protocols on 127.0.0.1, so the production
clients (globus-sdk, globus-compute-sdk, sfapi_client, pyscicat) run unchanged against it. DAG code
never imports it. Start it with ``python -m facility --root .facility --port 8765``.
"""
