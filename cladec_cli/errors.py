"""Errors that reach the user as one line on stderr instead of a traceback."""


class CladecError(Exception):
    """A problem the user can fix; `exit_code` is the process exit status."""

    exit_code = 1


class UsageError(CladecError):
    """Bad command-line input: a value, a combination of options, a missing file."""

    exit_code = 2


class DataError(CladecError):
    """Data that cannot be found or read, or does not fit the model."""

    exit_code = 2


class ArtifactError(CladecError):
    """A model file that is missing, corrupt, of the wrong kind or made for something else."""

    exit_code = 2


class TrainingError(CladecError):
    """Training that could not finish (diverged loss, interrupted)."""

    exit_code = 1
