"""Errors that reach the user as one line on stderr instead of a traceback."""


class CladecError(Exception):
    """A problem the user can fix; `exit_code` is the process exit status. Parameters named in the
    message with `option` read as keywords here and as options on the command line (`for_cli`)."""

    exit_code = 1

    def __str__(self):
        return _render(self, lambda name: f"`{name}`")


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


class CladecWarning(UserWarning):
    """Something the user should check, found on the way (a classifier at chance on its data); parameters
    marked with `option` read as keywords, as in `CladecError`."""

    def __str__(self):
        return _render(self, lambda name: f"`{name}`")


# A parameter named in a message is marked, so that each reader sees it under its own name: the Python
# API's keyword (`overwrite`) in str(error), the command-line option (--overwrite) through `for_cli`.
_MARK = "\x1f"
# Parameters whose command-line option is not their keyword with dashes.
_CLI_NAMES = {"trust": "--trust-model", "sigma": "--noise", "rec_loss_name": "--rec-loss",
              "deterministic=False": "--no-deterministic", "class_name": "--class",
              "layer_specs": "--layer", "outs": "--out-dir", "images_dir": "--images",
              "with_acc_eval=False": "--eval-epochs 0", "keep_dir": "--keep-eval-models"}


def first_line(error):
    """The first line of an exception's message, or its type's name where it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def option(name, value=None):
    """`name` (a keyword argument, e.g. "batch_size"), marked for translation, with `value` after it."""
    return f"{_MARK}{name}{_MARK}" + ("" if value is None else f" {value}")


def _render(error, name_of):
    """The message of `error` with each marked parameter named by `name_of(parameter)`."""
    parts = (str(error.args[0]) if error.args else "").split(_MARK)
    return "".join(name_of(part) if i % 2 else part for i, part in enumerate(parts))


def for_cli(error):
    """The message of `error` with each marked parameter written as its command-line option."""
    return _render(error, lambda name: _CLI_NAMES.get(name) or "--" + name.replace("_", "-"))


def cli_text(text):
    """`text` with each marked parameter written as its command-line option."""
    return for_cli(CladecError(text))


def counted(number, noun, plural=None):
    """`number` and `noun` in agreement, for messages: "1 file", "2 files" (`plural` where it is not noun + s)."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"
