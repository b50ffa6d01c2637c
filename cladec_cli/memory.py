"""How much memory this process may still take, and how much of it data held whole may take.

The memory available is the smaller of the machine's (Linux's MemAvailable) and what the process's
control groups allow it: a Slurm job, a container or a Kubernetes pod gets a memory limit that the
machine's figure knows nothing of, and a job that passes it is killed without a word.
"""

import os
from pathlib import Path, PurePosixPath

# Share of the available memory that images fitted to a model (or their reconstructions) may take when
# held whole; the rest is left to the framework, the models and the copies a training makes.
HOLD_SHARE = 0.5
# A cgroup v1 memory limit at or above this is no limit (the kernel writes 2^63 rounded down to a page).
NO_LIMIT = 1 << 62
# (limit file, usage file, memory.stat key of reclaimable page cache) under cgroup v2 and v1.
CGROUP_FILES = {2: ("memory.max", "memory.current", "inactive_file"),
                1: ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")}


def _read(path):
    try:
        return Path(path).read_text()
    except OSError:
        return None


def machine_available_bytes(meminfo="/proc/meminfo"):
    """Linux's MemAvailable, else the physical memory (where /proc/meminfo is missing)."""
    for line in (_read(meminfo) or "").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _memory_cgroups(proc_cgroup, root):
    """(folder, version) of the process's memory control group and of each group above it, nearest first:
    a limit may be set on any of them (Slurm sets a job's on the job's group, above each step's)."""
    for line in (_read(proc_cgroup) or "").splitlines():
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0" and controllers == "":
            version, base = 2, Path(root)
        elif "memory" in controllers.split(","):
            version, base = 1, Path(root) / "memory"
        else:
            continue
        group = PurePosixPath(path or "/")
        for folder in (group, *group.parents):
            yield base / str(folder).lstrip("/"), version


def cgroup_headroom(proc_cgroup="/proc/self/cgroup", root="/sys/fs/cgroup"):
    """Bytes the process's control groups let it take beyond what they hold now (page cache that can be
    reclaimed counted as free), the least over the groups with a limit; None where none has one."""
    headroom = None
    for folder, version in _memory_cgroups(proc_cgroup, root):
        limit_file, usage_file, cache_key = CGROUP_FILES[version]
        limit, usage = (_read(folder / name) for name in (limit_file, usage_file))
        if limit is None or usage is None or limit.strip() == "max" or int(limit) >= NO_LIMIT:
            continue
        cache = 0
        for line in (_read(folder / "memory.stat") or "").splitlines():
            key, _, value = line.partition(" ")
            if key == cache_key:
                cache = int(value)
        free = max(0, int(limit) - int(usage) + cache)
        headroom = free if headroom is None else min(headroom, free)
    return headroom


def available_bytes():
    """Memory this process may still take without being swapped out or killed: the machine's, or its
    control groups' headroom where that is smaller."""
    machine, groups = machine_available_bytes(), cgroup_headroom()
    return machine if groups is None else min(machine, groups)


def hold_limit():
    """The most bytes that arrays held whole for the rest of a command may take: `HOLD_SHARE` of the
    memory available now."""
    return int(available_bytes() * HOLD_SHARE)


def gigabytes(n_bytes):
    """`n_bytes` in words: '13.8 GB'."""
    return f"{n_bytes / 1e9:.1f} GB"
