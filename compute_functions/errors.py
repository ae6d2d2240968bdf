"""The one exception class for bad scans and bad options (a data error: retrying cannot help).

``python -m compute_functions.reconstruct`` turns it into one stderr line ``reconstruct: <reason>`` and exit
status 2; the Airflow side fails the task once, without retries. Any other exception is a bug or an
infrastructure fault: traceback and exit status 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class ScanError(ValueError):
    """A scan or an option that cannot be reconstructed; the message is one line naming the reason."""

    def __init__(self, message: object = ""):
        text = " ".join(str(message).split())  # always one line
        super().__init__(text)


@contextmanager
def named(step: str) -> Iterator[None]:
    """A ScanError raised inside says which step refused: ``<step>: <reason>`` (a Compute function's one line)."""
    try:
        yield
    except ScanError as exc:
        raise ScanError(f"{step}: {exc}") from None


#: Exit status of ``python -m compute_functions.reconstruct`` (and ``param_line``) for a ScanError.
EXIT_DATA_ERROR = 2


def data_error_exit(step: str, exc: BaseException) -> int:
    """A command line's end on a data error (a ScanError, a missing file): one stderr line ``<step>: <reason>``
    and :data:`EXIT_DATA_ERROR`."""
    print(f"{step}: {' '.join(str(exc).split())}", file=sys.stderr)
    return EXIT_DATA_ERROR


def print_summary(produce: Callable[[], Any], errors: tuple[type[Exception], ...]) -> int:
    """A command line's end: ``produce()``'s summary printed as JSON and exit status 0; for one of ``errors``,
    one stderr line ``error: <reason>`` and exit status 1."""
    try:
        summary = produce()
    except errors as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0
