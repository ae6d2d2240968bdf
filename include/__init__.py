"""Plain Python shared by the DAGs: configuration, scan paths, manifests and the local facility."""
