"""The reconstruction science of beamline 8.3.2: plain Python, no Airflow imports.

Entry points: ``python -m compute_functions.reconstruct`` and ``python -m compute_functions.sample_scan``.
"""
