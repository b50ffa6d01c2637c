"""Shards of one experiment as processes: N local workers on one output folder (one GPU each where
there are GPUs), and the shard a Slurm job-array task stands for."""

import os
import subprocess
import sys
import threading

from cladec_cli import runtime
from cladec_cli.errors import CladecError
from cladec_cli.reproduce import parse_shard

# Options of the command that the shard processes must not repeat (they take a value).
_PARENT_ONLY = ("--workers", "--shard")


def shard_from_environment():
    """(K, N) of a Slurm job-array task (SLURM_ARRAY_TASK_ID, counted from SLURM_ARRAY_TASK_MIN, and
    SLURM_ARRAY_TASK_COUNT); (0, 1), the whole experiment, outside job arrays."""
    task, count = os.environ.get("SLURM_ARRAY_TASK_ID"), os.environ.get("SLURM_ARRAY_TASK_COUNT")
    if task is None or count is None:
        return 0, 1
    return parse_shard(f"{int(task) - int(os.environ.get('SLURM_ARRAY_TASK_MIN', 0))}/{count}")


def shard_arguments(argv, index, count):
    """The command line `argv` (without the program) for shard `index` of `count`."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _PARENT_ONLY:
            skip = True
        elif not arg.startswith(tuple(f"{name}=" for name in _PARENT_ONLY)):
            kept.append(arg)
    return [*kept, "--shard", f"{index}/{count}"]


def run_shards(argv, count):
    """Run the command `argv` as `count` shard processes at once, each line of their output prefixed
    with its shard; returns when all have finished, raises CladecError if one failed."""
    gpus = runtime.nvidia_gpus()
    processes = []
    for index in range(count):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_ARRAY_")}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(index % len(gpus))
        process = subprocess.Popen([sys.executable, "-m", "cladec_cli", *shard_arguments(argv, index, count)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        forward = threading.Thread(target=_forward, args=(process.stdout, f"[shard {index}/{count}] "), daemon=True)
        forward.start()
        processes.append((process, forward))
    failed = []
    for index, (process, forward) in enumerate(processes):
        if process.wait() != 0:
            failed.append(f"{index}/{count} (exit {process.returncode})")
        forward.join()
    if failed:
        raise CladecError(f"shard {', '.join(failed)} failed, see its output above; rerun the same command to "
                          "resume from what the shards finished")


def _forward(stream, prefix):
    for line in stream:
        sys.stderr.write(prefix + line)
        sys.stderr.flush()
