"""What every operator command shares: the import path, quiet logging and one-line failures."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


class ToolError(RuntimeError):
    """A check failed; the message is the one line the operator sees."""


def prepare() -> None:
    """Make ``als_provider`` importable (Airflow adds plugins/ itself; ``python -m`` does not) and send
    Airflow's and the libraries' logs to stderr at WARNING, so stdout carries only the command's report."""
    plugins = str(REPO_ROOT / "plugins")
    if plugins not in sys.path:
        sys.path.append(plugins)
    import airflow.sdk  # noqa: F401  (configures logging to stdout at import; reconfigured below)
    from airflow.sdk.log import configure_logging

    configure_logging(log_level="WARNING", output=sys.stderr, colored_console_log=False)
    logging.captureWarnings(True)
    import authlib.deprecate  # noqa: F401  (sets its own "always" filter at import; ours goes in front)

    warnings.simplefilter("ignore", DeprecationWarning)  # libraries' notices are not the operator's concern


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose description is the module docstring."""
    return argparse.ArgumentParser(
        prog=f"python -m tools.{prog}",
        description=(doc or "").strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def run(prog: str, body: Callable[[], None], describe: Callable[[BaseException], str]) -> int:
    """Run ``body``; on failure print ``error: <prog>: <one line>`` on stderr and return 1."""
    try:
        body()
    except KeyboardInterrupt:
        print(f"error: {prog}: interrupted", file=sys.stderr)
        return 130
    except ToolError as exc:
        print(f"error: {prog}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # any service or configuration failure, described without credentials
        print(f"error: {prog}: {one_line(describe(exc))}", file=sys.stderr)
        return 1
    return 0


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def say(text: str) -> None:
    print(text, flush=True)
