"""Shards of one experiment as processes: N local workers on one output folder (one GPU each where
there are GPUs), and the shard a Slurm job-array task stands for."""

import os
import subprocess
import sys
import threading

from cladec_cli import runtime
from cladec_cli.errors import CladecError, UsageError, counted, option

# Options of the command that the shard processes must not repeat (they take a value), and the
# variables that would set them.
_PARENT_ONLY = ("--workers", "--shard")
_PARENT_VARIABLES = ("CLADEC_REPRODUCE_WORKERS", "CLADEC_REPRODUCE_SHARD")


def shard_from_environment():
    """(K, N) of a Slurm job-array task: the task's place in its array (SLURM_ARRAY_TASK_ID counted
    from SLURM_ARRAY_TASK_MIN in steps of SLURM_ARRAY_TASK_STEP) of SLURM_ARRAY_TASK_COUNT tasks;
    (0, 1), the whole experiment, outside job arrays."""
    env = os.environ
    task, count = env.get("SLURM_ARRAY_TASK_ID"), env.get("SLURM_ARRAY_TASK_COUNT")
    if task is None or count is None:
        return 0, 1
    numbers = {}
    for name, default in (("SLURM_ARRAY_TASK_ID", None), ("SLURM_ARRAY_TASK_COUNT", None),
                          ("SLURM_ARRAY_TASK_MIN", 0), ("SLURM_ARRAY_TASK_STEP", 1)):
        value = env.get(name) or default
        try:
            numbers[name] = int(value)
        except ValueError:
            raise UsageError(f"the environment variable {name} must be a whole number, got {value!r}; "
                             f"or pass {option('shard')} K/N") from None
    offset = numbers["SLURM_ARRAY_TASK_ID"] - numbers["SLURM_ARRAY_TASK_MIN"]
    step = numbers["SLURM_ARRAY_TASK_STEP"] or 1
    count = numbers["SLURM_ARRAY_TASK_COUNT"]
    if offset % step or not 0 <= offset // step < count:
        raise UsageError(f"cannot tell this task's shard from its job array (task {task} of {count}); submit "
                         "the array as a range such as --array=0-N (with or without :step), "
                         f"or pass {option('shard')} K/N")
    return offset // step, count


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
    gpus = visible_gpus()
    sharing = bool(gpus) and count > len(gpus)
    if sharing:
        sys.stderr.write(f"note: {count} workers share {counted(len(gpus), 'GPU')}; processes "
                         "sharing a GPU were measured no faster together than one alone, so one worker a GPU "
                         "is enough\n")
    processes = []
    for index in range(count):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_ARRAY_") and k not in _PARENT_VARIABLES}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
            if sharing:  # processes share a GPU: none may take all its memory up front
                env.update(XLA_PYTHON_CLIENT_PREALLOCATE="false", TF_FORCE_GPU_ALLOW_GROWTH="true")
        process = subprocess.Popen([sys.executable, "-m", "cladec_cli", *shard_arguments(argv, index, count)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                                   env=env)
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


def visible_gpus():
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries: those it already names, else the
    ones nvidia-smi lists."""
    named = os.environ.get("CUDA_VISIBLE_DEVICES")
    if named is not None:
        return [g.strip() for g in named.split(",") if g.strip() and g.strip() != "-1"]
    return [str(i) for i in range(len(runtime.nvidia_gpus()))]


def _forward(stream, prefix):
    for line in stream:
        sys.stderr.write(prefix + line)
        sys.stderr.flush()
