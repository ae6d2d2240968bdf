"""Say which experiment folders' scans are export-controlled, and which are released, for the spot832 watcher.

  show                      the folder list (Variable als_export_control_folders) and what counts of it
  control PATTERN...        add folders (names or fnmatch patterns, e.g. 'BLS-12345_*') whose scans are
                            export-controlled: dispatched with is_export_controlled true and recorded
  release PATTERN...        add folders whose scans are not export-controlled; the released list is signed
                            with the Connection als_signing (an edit in the UI voids it: scans are held again)
  check FOLDER/FILE.h5      whether a scan has an export-control record (and whether its signature holds)

A scan of a folder in neither list is held by the watcher (never dispatched). Nothing here lifts the record of
a scan that was once export-controlled (docs/security.md). Each change is printed, for the operator's log.
Runs where the metadata database is reachable (the scheduler's host, ``astro dev bash``).
"""

from __future__ import annotations

import sys

from tools._cli import parser, prepare, run, say

PROG = "export_control"


def main(argv: list[str] | None = None) -> int:
    args_parser = parser(PROG, __doc__)
    args_parser.add_argument("command", choices=("show", "control", "release", "check"))
    args_parser.add_argument("names", nargs="*")
    args = args_parser.parse_args(argv)

    def body() -> None:
        prepare()
        from include.export_control import find_controlled, folder_policy, update_folders

        if args.command == "check":
            for name in args.names:
                found = find_controlled(name)
                say(f"{name}: " + ("; ".join(r.describe() for r in found) if found else "no export-control record"))
            return
        if args.command in ("control", "release"):
            if not args.names:
                raise SystemExit(f"{PROG} {args.command}: name at least one folder or pattern")
            key = "control" if args.command == "control" else "release"
            policy = update_folders(**{key: args.names})
            say(f"{args.command}: {', '.join(args.names)} (by the operator of this shell)")
        else:
            policy = folder_policy()
        say(f"export-controlled folders: {', '.join(policy.controlled) or 'none'}")
        say(f"released folders: {', '.join(policy.released) or 'none'}")
        for problem in policy.problems:
            say(f"problem: {problem}")

    return run(PROG, body, str)


if __name__ == "__main__":
    sys.exit(main())
