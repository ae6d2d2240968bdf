"""Review and re-sign deletion-manifest entries that the prune DAG refuses (docs/pruning.md).

  review           list every stored entry prune would refuse: key, kind and reason, tab-separated
  resign KEY...    sign entries a person has reviewed (each must pass every write-time rule; others are named
                   and left as they are)

Runs where Airflow's CLI works (the metadata database and the Connection als_signing).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tools._cli import parser, run, say

PROG = "manifests"


def main(argv: Sequence[str] | None = None) -> int:
    args_parser = parser(PROG, __doc__)
    args_parser.add_argument("action", choices=["review", "resign"])
    args_parser.add_argument("keys", nargs="*", help="resign: the manifest keys (als_prune/<day>/<id>) to re-sign")
    args = args_parser.parse_args(argv)
    if args.action == "resign" and not args.keys:
        args_parser.error("resign needs the keys to re-sign (see review)")

    def body() -> None:
        from include.manifests import MetadataDbVariables, resign, review

        store = MetadataDbVariables()
        if args.action == "review":
            for bad in review(store=store):
                say(f"{bad.key}\t{bad.kind}\t{bad.reason}")
            return
        for entry in resign(args.keys, store=store):
            say(f"re-signed {entry.key}: {entry} (check {entry.check}, due {entry.not_before:%Y-%m-%d %H:%M} UTC)")

    return run(PROG, body, str)


if __name__ == "__main__":
    sys.exit(main())
