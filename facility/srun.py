"""``srun`` of the stand-in's Slurm (facility/sfapi.py): a job step of ``--ntasks`` tasks run as parallel processes.

Each task gets ``SLURM_PROCID`` (its rank), ``SLURM_NTASKS``, ``SLURM_NODEID``, ``SLURM_LOCALID`` and
``SLURM_STEP_NUM_TASKS``, inherits the job's output and error, and the step ends when every task has: its exit
status is the highest of the tasks' (srun's), with srun's line for each failed task. As Slurm refuses them, a step
asking for more nodes than the job holds (``SLURM_NNODES``) or more tasks than ``--nodes`` times ``--ntasks-per-node``
fails before anything runs. Options: ``--nodes``/``-N``, ``--ntasks``/``-n``, ``--ntasks-per-node``,
``--cpus-per-task``/``-c``, ``--cpu-bind``; the command follows them. Run as ``facility/bin/srun``, which the
stand-in puts first on a job's PATH; its ``task_fail`` fault (``FACILITY_SRUN_FAIL_TASK``) makes one task exit 1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

_VALUED = {"--nodes": "nodes", "-N": "nodes", "--ntasks": "ntasks", "-n": "ntasks"}
_VALUED |= {"--ntasks-per-node": "ntasks-per-node", "--cpus-per-task": "cpus", "-c": "cpus", "--cpu-bind": "bind"}


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """srun's options and the command after them; ValueError with srun's words for an option it does not know."""
    options: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        word = argv[i]
        key, eq, value = word.partition("=")
        if key not in _VALUED:
            raise ValueError(f"unrecognized option '{word}'")
        if not eq:
            if i + 1 >= len(argv):
                raise ValueError(f"option '{key}' requires an argument")
            i += 1
            value = argv[i]
        options[_VALUED[key]] = value
        i += 1
    if i >= len(argv):
        raise ValueError("fatal: No command given to execute.")
    return options, argv[i:]


def _count(options: dict[str, str], key: str, default: int) -> int:
    try:
        value = int(options.get(key, default))
    except ValueError:
        raise ValueError(f'error: Invalid numeric value "{options[key]}" for --{key}') from None
    if value < 1:
        raise ValueError(f'error: Invalid numeric value "{value}" for --{key}')
    return value


def main(argv: list[str] | None = None) -> int:
    try:
        options, command = parse(sys.argv[1:] if argv is None else argv)
        allocated = int(os.environ.get("SLURM_NNODES", "1"))
        nodes = _count(options, "nodes", 1)
        spread = -(-int(options["ntasks"]) // nodes) if "ntasks" in options else 1  # tasks spread over the nodes
        per_node = _count(options, "ntasks-per-node", spread)
        ntasks = _count(options, "ntasks", nodes * per_node)
        if nodes > allocated:
            raise ValueError(f"error: Only allocated {allocated} nodes asked for {nodes}")
        if ntasks > nodes * per_node:
            raise ValueError("error: Unable to create step for job: More processors requested than permitted")
    except ValueError as exc:
        print(f"srun: {exc}", file=sys.stderr)
        return 1
    procs = []
    failing = os.environ.get("FACILITY_SRUN_FAIL_TASK")  # the stand-in's task_fail fault (facility/sfapi.py)
    for rank in range(ntasks):
        env = {
            **os.environ,
            "SLURM_PROCID": str(rank),
            "SLURM_NTASKS": str(ntasks),
            "SLURM_STEP_NUM_TASKS": str(ntasks),
            "SLURM_NODEID": str(rank // per_node),
            "SLURM_LOCALID": str(rank % per_node),
        }
        argv = command
        if failing is not None and int(failing) == rank:
            argv = ["sh", "-c", f"echo 'slurmstepd: error: task {rank} lost its node (facility fault)' >&2; exit 1"]
        try:
            procs.append(subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL))
        except OSError as exc:
            print(f"srun: error: execve(): {command[0]}: {exc.strerror}", file=sys.stderr)
            for proc in procs:
                proc.kill()
            return 2

    def forward(signum, _frame):  # scancel: the step's tasks go too
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    worst = 0
    for rank, proc in enumerate(procs):
        code = proc.wait()
        if code != 0:
            status = f"Killed by signal {-code}" if code < 0 else f"Exited with exit code {code}"
            print(f"srun: error: nid{rank // per_node:06d}: task {rank}: {status}", file=sys.stderr)
            worst = max(worst, code if code > 0 else 128 - code)
    return worst


if __name__ == "__main__":
    sys.exit(main())
