"""``python -m include.facility --root DIR --port N``: serve the local facility on 127.0.0.1."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import uvicorn

from include.endpoints import default_facility_root
from include.facility.app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m include.facility", description=__doc__)
    parser.add_argument("--root", type=Path, default=default_facility_root(), help="local facility root")
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    config = uvicorn.Config(create_app(args.root), host="127.0.0.1", port=args.port, log_level=args.log_level)
    server = uvicorn.Server(config)
    server.run()


if __name__ == "__main__":
    main()
