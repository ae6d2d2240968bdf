"""``python -m facility --root DIR --port N``: serve the local facility on 127.0.0.1.

At each start it generates an admin token for ``/_facility/*`` (all but ``health``) and writes it to the
token file (mode 0600; default ``<root>-<port>.admin-token`` beside the root); it never prints the token.
Whatever environment it is started from, it drops every ``AIRFLOW*`` variable and anything named like a
secret before serving, so neither its stand-ins nor the jobs and Compute functions they run can read them.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
from collections.abc import MutableMapping
from pathlib import Path

import uvicorn

from facility.app import create_app
from facility.process import token_file_of
from include.endpoints import default_facility_root

#: Environment variables dropped at start (an Airflow's settings and connections, anything secret-like).
SECRET_LIKE = re.compile(r"^AIRFLOW|SECRET|PASSWORD|PASSWD|TOKEN|FERNET|JWT|PRIVATE|CREDENTIAL|API_?KEY", re.I)


def scrub_environment(environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """Remove secret-like variables from ``environ`` (this process's environment); return their names."""
    dropped = sorted(name for name in environ if SECRET_LIKE.search(name))
    for name in dropped:
        del environ[name]
    return dropped


def write_token(path: Path) -> str:
    """A new admin token, written to ``path`` with mode 0600 (replacing an earlier start's)."""
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    os.replace(temporary, path)
    return token


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m facility", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=default_facility_root(), help="local facility root")
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1); 0.0.0.0 only in a container network (docker-compose.override.yml)",
    )
    parser.add_argument("--token-file", type=Path, default=None, help="where to write the admin token")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    dropped = scrub_environment()
    if dropped:
        logging.getLogger("facility").warning("dropped from the environment: %s", ", ".join(dropped))
    token_file = args.token_file or token_file_of(args.root, args.port)
    token = write_token(token_file)
    print(f"facility admin token in {token_file} (send it as 'Authorization: Bearer <token>')", flush=True)
    config = uvicorn.Config(
        create_app(args.root, admin_token=token), host=args.host, port=args.port, log_level=args.log_level
    )
    server = uvicorn.Server(config)
    server.run()


if __name__ == "__main__":
    main()
