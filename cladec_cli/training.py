"""Shared training machinery: settings, optimizer schedule, callbacks, resumable and guarded `fit`."""

import contextlib
import json
import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from cladec_cli import artifacts, runtime
from cladec_cli.errors import TrainingError, UsageError


@dataclass
class TrainSettings:
    """How a model is trained. `lr` is the start of a cosine decay to 0 over all epochs."""

    epochs: int = 64
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0
    verbose: object = "auto"
    tensorboard: str = None
    resume: bool = False
    overwrite: bool = False
    extra_callbacks: list = field(default_factory=list)

    def __post_init__(self):
        if self.epochs < 0:
            raise UsageError(f"--epochs must be 0 or more, got {self.epochs}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise UsageError(f"--lr must be positive, got {self.lr}")
        if self.tensorboard:
            check_tensorboard()

    def provenance(self):
        """What a trained model records about how it was trained."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "lr_schedule": "cosine", "optimizer": "adam", "seed": self.seed}

    def with_epochs(self, epochs):
        """A copy of these settings with another epoch count."""
        return TrainSettings(**{**self.__dict__, "epochs": epochs, "extra_callbacks": []})


def make_optimizer(settings, steps_per_epoch):
    """Adam with a cosine decay of the learning rate from `settings.lr` to 0 over the whole run."""
    total = max(1, settings.epochs * steps_per_epoch)
    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(settings.lr, decay_steps=total))


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training after the first epoch whose mean loss is NaN or infinite, and remembers it.

    It looks at whole epochs, not at every batch as Keras' TerminateOnNaN does: a batch-level hook
    makes Keras hand every step's logs to the callbacks synchronously, which costs speed.
    """

    def __init__(self):
        super().__init__()
        self.bad = None

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.bad = (epoch, float(loss))
            self.model.stop_training = True


def backup_folder(out):
    """Where an interrupted run for the artifact `out` keeps its last finished epoch."""
    return Path(f"{out}.partial")


RUN_FILE = "run.json"


def run_settings(kind, dataset, settings, **fields):
    """What defines a training run: its kind, its data and their preprocessing, its training settings
    and the job's own fields (layer, alpha, ...). The trained model records them; a resumed run must
    match the interrupted one on every one of them."""
    return {"kind": kind, **dataset.provenance(), **settings.provenance(), **fields}


def _as_json(data):
    return json.loads(json.dumps(artifacts.json_safe(data), sort_keys=True, default=str))


def _differences(before, now):
    keys = sorted(set(before) | set(now))
    return [f"{key} {_show(before.get(key))} -> {_show(now.get(key))}" for key in keys
            if before.get(key) != now.get(key)]


def _show(value):
    if value is None:
        return "none"
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def prepare_backup(out, settings, run=None):
    """Check a left-over interrupted run against --resume / --overwrite and, when resuming, against
    the settings `run` it was started with; return the backup folder, which records `run`."""
    folder = backup_folder(out)
    if folder.exists() and not settings.resume:
        if not settings.overwrite:
            raise UsageError(
                f"an interrupted run for {out} is kept in {folder}; pass --resume to continue it "
                "or --overwrite to start again"
            )
        shutil.rmtree(folder)
    run = _as_json(run or {})
    record = folder / RUN_FILE
    if folder.exists():
        if not record.is_file():
            raise UsageError(f"the interrupted run in {folder} does not record its settings, so it cannot be "
                             "checked before resuming; pass --overwrite to start again")
        before = json.loads(record.read_text())
        changed = _differences(before, run)
        if changed:
            raise UsageError(f"the interrupted run in {folder} was started with other settings "
                             f"({'; '.join(changed)}); resume it with the same ones or pass --overwrite to "
                             "start again")
    else:
        folder.mkdir(parents=True)
        artifacts.write_json(record, run)
    return folder


def has_checkpoint(folder):
    """Whether a backup folder holds at least one finished epoch."""
    return (Path(folder) / "training_metadata.json").exists() or \
        (Path(folder) / "training_metadata.json.bkp").exists()


def progress_verbosity(verbose):
    """Keras verbosity: a live progress bar on a terminal, one line per epoch in logs."""
    if verbose != "auto":
        return verbose
    return 1 if sys.stderr.isatty() else 2


def check_tensorboard():
    """Refuse --tensorboard up front when the tensorboard package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UsageError("--tensorboard needs the tensorboard package: pip install tensorboard "
                         "(or install cladec with the [tensorboard] extra)") from None


def fit(model, train_data, settings, backup=None, validation_data=None):
    """`model.fit` with progress on stderr, resumable epochs, TensorBoard and a NaN guard.

    Returns the history dict. Raises TrainingError when the loss stops being finite.
    """
    if settings.epochs == 0:
        return {}
    guard = StopOnNonFinite()
    callbacks = [guard, *settings.extra_callbacks]
    if backup is not None:
        restore = keras.callbacks.BackupAndRestore(str(backup), double_checkpoint=True, delete_checkpoint=False)
        # Saving once per epoch, its batch hook does nothing; saying so keeps Keras' asynchronous
        # dispatch of per-step logs, which any batch-level callback would switch off.
        restore.async_safe = True
        callbacks.append(restore)
    if settings.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(settings.tensorboard))
    # Progress bars go to stderr so that stdout stays clean for --json.
    with contextlib.redirect_stdout(sys.stderr):
        history = model.fit(train_data, epochs=settings.epochs, callbacks=callbacks,
                            validation_data=validation_data, verbose=progress_verbosity(settings.verbose),
                            shuffle=False)
    if guard.bad is not None:
        epoch, loss = guard.bad
        # The backup holds the diverged weights: resuming from them is pointless, and keeping them
        # would refuse the obvious next step, the same command with a smaller learning rate.
        finish_backup(backup)
        raise TrainingError(f"training diverged: the loss became {loss} in epoch {epoch + 1}; "
                            "no model was written (try a smaller --lr)")
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def finish_backup(folder):
    """Remove the backup of a run whose artifact has been written."""
    if folder is not None and Path(folder).exists():
        shutil.rmtree(folder)


@contextlib.contextmanager
def training_run(out, settings, run=None):
    """The frame of every training command: refuse an existing output, pick up (or refuse) an
    interrupted run of the same `run_settings` and seed everything; yields the backup folder, removed
    once the model is saved, or when training failed before finishing an epoch."""
    artifacts.check_output(out, settings.overwrite, suffixes=(".h5",))
    backup = prepare_backup(out, settings, run)
    runtime.seed_everything(settings.seed)
    try:
        yield backup
    except BaseException:
        if backup.exists() and not has_checkpoint(backup):
            finish_backup(backup)
        raise
    finish_backup(backup)


def trained_provenance(run, history, metrics):
    """What a trained model records: its `run_settings` and its metrics."""
    final_loss = history["loss"][-1] if history.get("loss") else None
    return {**artifacts.base_provenance(run["kind"]), **run, "metrics": {**metrics, "train_loss": final_loss}}


def predict(model, data, batch_size=512):
    """Model outputs for a NumPy array or a tf.data dataset of image batches, as one NumPy array."""
    if isinstance(data, np.ndarray):
        if len(data) == 0:
            return np.zeros((0,) + tuple(model.output.shape[1:]), np.float32)
        return model.predict(data, batch_size=batch_size, verbose=0)
    return model.predict(data, verbose=0)
