"""How much memory this machine has free, and how much of it data held whole may take."""

import os

# Share of the available memory that images fitted to a model (or their reconstructions) may take when
# held whole; the rest is left to the framework, the models and the copies a training makes.
HOLD_SHARE = 0.5


def available_bytes():
    """Memory available to new allocations without swapping: Linux's MemAvailable, else the physical
    memory (where /proc/meminfo is missing)."""
    try:
        with open("/proc/meminfo") as lines:
            for line in lines:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def hold_limit():
    """The most bytes that arrays held whole for the rest of a command may take: `HOLD_SHARE` of the
    memory available now."""
    return int(available_bytes() * HOLD_SHARE)


def gigabytes(n_bytes):
    """`n_bytes` in words: '13.8 GB'."""
    return f"{n_bytes / 1e9:.1f} GB"
