"""The steps of each pipeline, wired from operators; the DAG files (and the dispatcher) build DAGs from them."""
