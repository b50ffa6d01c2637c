"""Shared training machinery: settings, optimizer schedule, callbacks, resumable and guarded `fit`."""

import contextlib
import hashlib
import json
import logging
import math
import numbers
import operator
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from cladec_cli import artifacts, chunked_steps, distribute, interrupts, runtime, torch_gradients
from cladec_cli.data.feed import ArrayFeed, WholeBatches, images_only, set_start_epoch
from cladec_cli.data.split import FileFeed
from cladec_cli.errors import CladecWarning, TrainingError, UsageError, option


LR_SCHEDULES = ("cosine", "constant")


@dataclass
class TrainSettings:
    """How a model is trained. `lr` is the start of a cosine decay to 0 over all epochs (`lr_schedule`
    "cosine") or Adam's rate throughout ("constant"); `trust_model` says that the model trained from
    was allowed to run code stored in its file (Lambda layers). `precision`, `deterministic` (None: on
    for CPUs, off for GPUs), `steps_per_execution`, `xla` and `distribute` are the device set-up
    (`runtime`); `verbose` is Keras' progress setting. A training seeds Python, NumPy and the backend
    with `seed`; the dtype policy and op determinism it sets are put back when it ends."""

    epochs: int = 64
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0
    verbose: object = "auto"
    tensorboard: str = None
    resume: bool = False
    overwrite: bool = False
    trust_model: bool = False
    extra_callbacks: list = field(default_factory=list)
    precision: str = "auto"
    deterministic: bool = None
    steps_per_execution: int = None
    xla: str = "auto"
    announce: object = None
    backup_interval: float = 60.0
    lr_schedule: str = "cosine"
    distribute: str = "auto"
    stack_models: bool = False

    def __post_init__(self):
        for name in ("epochs", "batch_size", "seed"):
            setattr(self, name, _whole_number(name, getattr(self, name)))
        if self.steps_per_execution is not None:
            self.steps_per_execution = _whole_number("steps_per_execution", self.steps_per_execution)
        self.lr = _real_number("lr", self.lr)
        self.backup_interval = _real_number("backup_interval", self.backup_interval)
        if self.epochs < 0:
            raise UsageError(f"{option('epochs')} must be 0 or more, got {self.epochs}")
        if self.batch_size < 1:
            raise UsageError(f"{option('batch_size')} must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise UsageError(f"{option('lr')} must be positive, got {self.lr}")
        if not 0 <= self.seed < 2**32:
            raise UsageError(f"{option('seed')} must lie in 0 to 2**32 - 1, got {self.seed}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UsageError(f"unknown learning-rate schedule {self.lr_schedule!r}; choose cosine or constant")
        if self.tensorboard:
            check_tensorboard()
        if self.stack_models and runtime.backend() != "jax":
            raise UsageError(f"{option('stack_models')} needs Keras' JAX backend (KERAS_BACKEND=jax); "
                             f"this is {runtime.backend()}")
        self._runtime = None

    def runtime(self):
        """The resolved device set-up (precision, XLA, determinism, steps per execution) for these settings,
        resolved again when one of them has been changed since."""
        asked = (self.precision, self.deterministic, self.steps_per_execution, self.xla, self.distribute)
        if self._runtime is None or self._runtime[0] != asked:
            self._runtime = asked, runtime.resolve_runtime(*asked)
        setup = self._runtime[1]
        if self.batch_size % setup.replicas:
            raise UsageError(f"{option('batch_size')} {self.batch_size} does not split evenly over "
                             f"{setup.replicas} replicas; it is the global batch of all of them")
        return setup

    def distribution(self):
        """The tf.distribute / keras.distribution set-up these settings train under."""
        return distribute.resolve(self.distribute, self.runtime().backend)

    def provenance(self):
        """What a trained model records about how it was trained."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "lr_schedule": self.lr_schedule, "optimizer": "adam", "seed": self.seed,
                "trust_model": self.trust_model, **self.runtime().provenance()}

    def with_epochs(self, epochs):
        """A copy of these settings with another epoch count."""
        fields = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        return TrainSettings(**{**fields, "epochs": epochs, "extra_callbacks": []})


def _whole_number(name, value):
    """`value` as an int (NumPy integers too); anything else is refused naming the parameter `name`."""
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise UsageError(f"{option(name)} must be a whole number, got {value!r}") from None


def _real_number(name, value):
    """`value` as a float (NumPy floats too); anything else is refused naming the parameter `name`."""
    if isinstance(value, (bool, str, bytes)) or not isinstance(value, (numbers.Real, np.generic)):
        raise UsageError(f"{option(name)} must be a number, got {value!r}")
    return float(value)


def make_optimizer(settings, steps_per_epoch):
    """Adam with a cosine decay of the learning rate from `settings.lr` to 0 over the whole run, or at
    `settings.lr` throughout (with dynamic loss scaling in float16)."""
    total = max(1, settings.epochs * steps_per_epoch)
    rate = settings.lr
    if settings.lr_schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(settings.lr, decay_steps=total)
    optimizer = keras.optimizers.Adam(rate)
    if settings.runtime().precision == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def batches_per_call(settings, data):
    """How many batches of `data` one compiled training call takes: the steps per execution of
    `settings` for in-memory feeds, which `fit` serves in chunks (see `chunked_steps`); 1 where Keras'
    own `steps_per_execution` loops over the steps instead: for other feeds, for distributed training,
    whose engine splits each batch between replicas, and under TensorFlow with XLA on a CPU, or with XLA
    where an epoch ends in a shorter batch."""
    setup = settings.runtime()
    if not _local_array_feed(settings, data) or _rolled_xla_loop_is_slow(setup) or _shorter_batch_in_xla(setup, data):
        return 1
    return setup.steps_per_execution


def _rolled_xla_loop_is_slow(setup):
    """Whether a chunk's `tf.while_loop` would run inside XLA on a CPU. XLA:CPU runs the convolutions of
    a rolled loop body many times slower (the paper's classifier at 4 steps a call: about 1 s a call
    against 16 ms a step), and TensorFlow traces chunks with an unknown batch count, so they cannot be
    unrolled; Keras' loop runs outside the compiled step."""
    return setup.backend == "tensorflow" and setup.xla and not setup.on_gpu


def _shorter_batch_in_xla(setup, data):
    """Whether a chunk would hold an epoch's last, shorter batch inside XLA under TensorFlow. XLA pads a
    slice of a length it does not know when compiling to its bound, a whole batch: that step would train
    on the missing images as zeros (and `tf.shape` gives the whole batch). Keras' loop gives each batch
    a call of its own instead."""
    return setup.backend == "tensorflow" and setup.xla and data.order.n % data.batch_size != 0


def _local_array_feed(settings, data):
    """Whether `data` is an in-memory feed that `fit` serves itself: in chunks, or through tf.data."""
    return isinstance(data, ArrayFeed) and settings.runtime().distribute == "none"


def compile_model(model, settings, data, loss, loss_weights=None):
    """Compile for training on the feed `data` with the shared optimizer, XLA and steps per execution of
    `settings`; no metrics, since per-step metrics cost a noticeable share of a step for models this
    small."""
    setup = settings.runtime()
    keras_steps = setup.steps_per_execution if batches_per_call(settings, data) == 1 else 1
    with warnings.catch_warnings():
        # Keras' own warning names no layer; `_say_xla_is_off` does.
        warnings.filterwarnings("ignore", message="Model doesn't support `jit_compile=True`")
        model.compile(optimizer=make_optimizer(settings, len(data)), loss=loss, loss_weights=loss_weights,
                      jit_compile=setup.xla, steps_per_execution=keras_steps)
    if setup.xla and not model.jit_compile:
        _say_xla_is_off(model, settings)
    # Without a distribution strategy, Keras would create the optimizer's variables inside the first
    # traced training step, which makes that trace take about a second longer for the paper's
    # classifier on a 2-core CPU (first step 2.1-2.8 s against 1.0-1.3 s).
    model.optimizer.build(model.trainable_variables)


def warn(settings, message, before_training=False):
    """Warn the user of `message` (None: nothing to say): on the command line through `settings.announce`
    (with `before_training`, once training starts, after every check that could refuse the command),
    else as a Python warning (`CladecWarning`), as a notebook shows it."""
    if message is None:
        return
    if settings is None or settings.announce is None:
        warnings.warn(CladecWarning(message), stacklevel=3)
        return
    line, announce = f"warning: {message}", settings.announce
    if before_training:  # announce_once: the warning comes before the training's first line, once
        settings.announce = lambda text: (announce(line), announce(text))
    else:
        announce(line)


def _say_xla_is_off(model, settings):
    """One line for a model that Keras compiles without XLA although XLA is on: it has layers that
    XLA cannot compile (the random augmentation layers, lookups, LSTM and GRU)."""
    # The layers Keras itself looks through (`model_supports_jit`).
    kinds = sorted({type(layer).__name__ for layer in model._flatten_layers() if not layer.supports_jit})
    why = f"XLA cannot compile its {', '.join(kinds)} layers" if kinds else "Keras does not support it"
    warn(settings, f"XLA is off for {model.name}: {why}")


def _file_digest(path):
    """SHA-256 of a file's bytes, or None when it does not exist."""
    if not os.path.exists(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# How to start a run again whose backup cannot be resumed (`reproduce`, which always resumes, has no --overwrite).
RESTART = f"delete that folder (or pass {option('overwrite')}) to start again"


class PeriodicBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore, saving at the end of an epoch only once `interval` seconds have passed
    since the last save. Saving weights and optimizer state costs a noticeable share of a fast epoch
    (0.05-0.2 s for a decoder; a GPU epoch on part of the data takes a few tenths of a second), and a
    resumed run repeats at most `interval` seconds of work."""

    def __init__(self, folder, interval):
        super().__init__(str(folder), double_checkpoint=True, delete_checkpoint=False)
        self.interval = float(interval)
        self._last_save = None
        # Saving per epoch, its batch hook does nothing; saying so keeps Keras' asynchronous
        # dispatch of per-step logs, which any batch-level callback would switch off.
        self.async_safe = True

    def on_train_begin(self, logs=None):
        # Keras falls back to the backup before the last (`.bkp`) when `_load_model` raises OSError.
        try:
            super().on_train_begin(logs)
        except OSError as e:
            earlier = ("the one before it could not be read either" if os.path.exists(self._prev_weights_path)
                       else "no earlier one is kept")
            raise TrainingError(f"the interrupted run's backup in {self.backup_dir} is damaged ({e}) and "
                                f"{earlier}; {RESTART}") from e
        self._last_save = time.monotonic()

    def _load_model(self):
        record = Path(self._training_metadata_path)
        if record.exists():
            try:
                written = json.loads(record.read_text())
                int(written["epoch"])
            except (ValueError, KeyError, TypeError) as e:
                raise OSError(f"unreadable {record.name}: {e}") from e
            digest = written.get("weights_sha256")  # none in backups of earlier versions
            if digest and _file_digest(self._weights_path) != digest:
                raise OSError(f"its weights are not those {record.name} was written with")
        # Keras warns about each part of a model it cannot fill before it gives up: kept back unless it loads.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                super()._load_model()
            except (ValueError, KeyError) as e:  # whole, but of another model: the pair before it would be too
                said = (str(e).strip().splitlines() or [type(e).__name__])[0]
                said = said.split(" Example error message")[0].rstrip(".")
                raise TrainingError(f"the interrupted run's backup in {self.backup_dir} holds weights that do not "
                                    f"fit this run's model (an earlier version may have laid it out otherwise; "
                                    f"Keras: {said}); {RESTART}") from e
        for warning in caught:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)

    def _save_model(self):
        """Keras' save (the last pair kept as `.bkp`, then the new weights and epoch record), with each file
        written whole before it replaces the last, and the record holding the weights' digest: a process
        killed between the two leaves a pair that `_load_model` refuses, so Keras falls back to the one
        before. Ctrl-C and SIGTERM wait until both are written."""
        with interrupts.deferred():
            folder = Path(self.backup_dir)
            folder.mkdir(parents=True, exist_ok=True)
            for path, kept in ((self._weights_path, self._prev_weights_path),
                               (self._training_metadata_path, self._prev_training_metadata_path)):
                if os.path.exists(path):
                    shutil.copyfile(path, kept)
            writing = folder / "writing.weights.h5"
            self.model.save_weights(filepath=str(writing), overwrite=True)
            digest = _file_digest(writing)
            os.replace(writing, self._weights_path)
            record = {"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights_sha256": digest}
            artifacts.write_json(self._training_metadata_path, record, overwrite=True)

    def on_epoch_end(self, epoch, logs=None):
        # Every worker of a distributed training resumes from the chief's backup; only the chief saves it.
        if time.monotonic() - self._last_save >= self.interval and distribute.writes_files():
            super().on_epoch_end(epoch, logs)
            self._last_save = time.monotonic()


class FeedEpoch(keras.callbacks.Callback):
    """Tells the data feed which epoch begins, so a resumed run sees the batches an uninterrupted one would."""

    def __init__(self, data):
        super().__init__()
        self.data = data

    def on_epoch_begin(self, epoch, logs=None):
        set_start_epoch(self.data, epoch)


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
    """Where an interrupted run for the artifact `out` keeps its last finished epoch: `<out>.partial`.

    For a list of artifacts trained in one pass, one hidden folder in their common folder, named
    after all of them: `.<name1>+<name2>+....partial` (long lists shortened to the first name plus a digest).
    """
    outs = [Path(o) for o in out] if isinstance(out, (list, tuple)) else [Path(out)]
    if len(outs) == 1:
        return Path(f"{outs[0]}.partial")
    common = Path(os.path.commonpath([o.absolute().parent for o in outs]))
    names = [str(o.absolute().with_suffix("").relative_to(common)).replace(os.sep, "_") for o in outs]
    joined = "+".join(names)
    if len(joined) > 120:
        joined = f"{names[0]}+{len(names) - 1}more-{hashlib.sha256(joined.encode()).hexdigest()[:12]}"
    return common / f".{joined}.partial"


RUN_FILE = "run.json"


def run_settings(kind, dataset, settings, **fields):
    """What defines a training run: its kind, its data and their preprocessing, its training settings
    and the job's own fields (layer, alpha, ...). The trained model records them; a resumed run must
    match the interrupted one on every one of them."""
    return {"kind": kind, **dataset.provenance(), **settings.provenance(), **fields}


def _as_json(data):
    return json.loads(json.dumps(artifacts.json_safe(data), sort_keys=True, default=str))


# Run settings recorded since a later version, with the value that runs started before then used: an
# interrupted run of an older version resumes when asked for the same.
ADDED_RUN_SETTINGS = {"runtime": {"precision": "float32"}, "trust_model": False, "pixel_range": "0,1",
                      "layer_convention": "blocks", "decoder_output": "sigmoid", "bn_statistics": "moving"}


def _differences(before, now):
    # Where a run computes may change when it resumes (another GPU, another worker taking it over);
    # of the runtime only the precision shapes what is trained.
    before, now = _without_placement(_with_added_settings(before, now)), _without_placement(now)
    changed = []
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key), now.get(key)
        if old == new:
            continue
        if key == "runs" and isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
            # The models of a several-layer run: each setting that changed, once, not every model's record.
            for run_old, run_new in zip(old, new):
                changed += [change for change in _differences(run_old, run_new) if change not in changed]
        else:
            changed.append(f"{key} {_show(old)} -> {_show(new)}")
    return changed


def _with_added_settings(before, now):
    """`before` with each setting of `ADDED_RUN_SETTINGS` it lacks and `now` has, at its older value."""
    if "runs" in before and "runs" in now and len(before["runs"]) == len(now["runs"]):
        before = {**before, "runs": [_with_added_settings(b, n) for b, n in zip(before["runs"], now["runs"])]}
    return {**{k: v for k, v in ADDED_RUN_SETTINGS.items() if k in now}, **before}


def _without_placement(run):
    if "runtime" in run:
        run = {**run, "runtime": {"precision": run["runtime"].get("precision")}}
    if "runs" in run:
        run = {**run, "runs": [_without_placement(r) for r in run["runs"]]}
    return run


def _codes_hint(before, now):
    """How `train-decoder` gives back the interrupted run's choice of cached codes, when that choice
    differs between two decoder runs: it follows the data and the version (alpha > 0 runs were not
    cached before), not only an option."""
    def cached(run):
        values = {r.get("cached_codes") for r in run.get("runs", [run])}
        return values.pop() if len(values) == 1 and isinstance(next(iter(values)), bool) else None

    was, wanted = cached(before), cached(now)
    if was is None or wanted is None or was == wanted:
        return ""
    return f" (for train-decoder: {option('cache_codes', 'yes' if was else 'no')})"


def _show(value):
    if value is None:
        return "none"
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def check_backup(out, settings, run=None):
    """Raise UsageError when the backup folder of an interrupted run for `out` exists and cannot be taken
    up: with neither --resume nor --overwrite, or resuming with settings other than the ones it recorded
    (`run`). Changes nothing; returns the folder. A non-chief worker of a distributed training checks
    nothing: the chief checks, creates and removes backups."""
    folder = backup_folder(out)
    if not distribute.writes_files() or not folder.exists() or (settings.overwrite and not settings.resume):
        return folder
    if not settings.resume:
        what = out if not isinstance(out, (list, tuple)) else ", ".join(map(str, out))
        raise UsageError(
            f"an interrupted run for {what} is kept in {folder}; pass {option('resume')} to continue it "
            f"or {option('overwrite')} to start again"
        )
    record = folder / RUN_FILE
    if not record.is_file():
        raise UsageError(f"the interrupted run in {folder} does not record its settings, so it cannot be "
                         f"checked before resuming; pass {option('overwrite')} to start again")
    before, run = json.loads(record.read_text()), _as_json(run or {})
    changed = _differences(before, run)
    if changed:
        raise UsageError(f"the interrupted run in {folder} was started with other settings "
                         f"({'; '.join(changed)}); resume it with the same ones{_codes_hint(before, run)} or "
                         f"pass {option('overwrite')} to start again")
    return folder


def prepare_backup(out, settings, run=None):
    """Check a left-over interrupted run (`check_backup`) and keep it to resume; otherwise (re)start the
    backup folder, empty but for `run`. Returns the backup folder."""
    folder = backup_folder(out)
    if not distribute.writes_files():
        return folder  # a non-chief worker: the chief checks, creates and removes the backup
    check_backup(out, settings, run)
    if folder.exists() and not settings.resume:
        shutil.rmtree(folder)  # --overwrite
    if not folder.exists():
        folder.mkdir(parents=True)
        try:
            artifacts.write_json(folder / RUN_FILE, _as_json(run or {}))
        except BaseException:  # a folder without its settings would only block the next run
            shutil.rmtree(folder, ignore_errors=True)
            raise
    return folder


def saved_by(out, run):
    """Whether the model file `out` was saved by a run with the settings `run`, ignoring where it computed
    (devices, replicas), as a resumed run does."""
    if not Path(out).is_file():
        return False
    try:
        recorded = artifacts.read_provenance(out)
    except (OSError, ValueError):
        return False
    run = _as_json(run)
    return not _differences({key: recorded[key] for key in run if key in recorded}, run)


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
    """Refuse --tensorboard up front when the tensorboard package, or TensorFlow (whose summary writer
    Keras' TensorBoard callback uses under every backend), is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UsageError(f"{option('tensorboard')} needs the tensorboard package: pip install tensorboard "
                         "(or install cladec with the [tensorboard] extra)") from None
    runtime.import_tensorflow_quietly(any_backend=True)
    if "tensorflow" not in sys.modules:
        raise UsageError(f"{option('tensorboard')} needs TensorFlow for its summary writer, also under the "
                         f"{runtime.backend()} backend: pip install tensorflow-cpu")


def fit(model, train_data, settings, backup=None, validation_data=None):
    """`model.fit` with progress on stderr, resumable epochs, TensorBoard and a NaN guard.

    Returns the history dict. Raises TrainingError when the loss stops being finite.
    """
    if settings.epochs == 0:
        return {}
    torch_gradients.clear_every_gradient(model)
    chunk = batches_per_call(settings, train_data)
    if chunk > 1:
        on_gpu = settings.runtime().on_gpu
        chunked_steps.install(model, train_data.batch_size, on_gpu)
        train_data = train_data.in_chunks(chunk, on_device=on_gpu and runtime.backend() == "jax")
        if runtime.backend() == "tensorflow":
            train_data = train_data.tf_dataset()
    elif _local_array_feed(settings, train_data) and runtime.has_tensorflow():
        train_data = train_data.tf_dataset()
    if settings.runtime().distribute == "multiworker":
        _build_from_local_batch(model, train_data, settings.distribution())
    guard = StopOnNonFinite()
    callbacks = [FeedEpoch(train_data), guard, *settings.extra_callbacks]
    if backup is not None:
        callbacks.append(PeriodicBackup(backup, settings.backup_interval))
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
                            f"no model was written (try a smaller {option('lr')})")
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def _build_from_local_batch(model, data, distribution):
    """Have `fit` build the model's state from this worker's first batch. Keras 3 builds it from a batch
    averaged over all replicas, a reduction MultiWorkerMirroredStrategy refuses (keras-team/keras#20585);
    only the batch's shapes and dtypes matter for building."""
    batch = data[0]

    def build(iterator=None, data_batch=None):
        with distribution.scope():
            model._symbolic_build(data_batch=batch)

    model._maybe_symbolic_build = build


def finish_backup(folder):
    """Remove the backup of a run whose artifact has been written."""
    if folder is not None and Path(folder).exists() and distribute.writes_files():
        shutil.rmtree(folder)


def start(settings):
    """Apply the settings' device set-up and seed everything, before any model is built."""
    runtime.apply(settings.runtime())
    runtime.seed_everything(settings.seed)
    if settings.announce is not None:
        settings.announce(settings.runtime().line(settings.batch_size))


@contextlib.contextmanager
def training_run(out, settings, run=None):
    """The frame of every training command: refuse an existing output, pick up (or refuse) an
    interrupted run of the same `run_settings`, apply the device set-up and seed everything; yields the
    backup folder, removed once the model is saved, or when training failed before finishing an epoch.

    `out` may be a list: the artifacts of one run that trains several models, all checked up front.
    Models, optimizers and metrics made inside are made in the distribution's scope. The global dtype
    policy and op determinism are put back as they were on the way out; the seeds stay set.
    """
    for path in out if isinstance(out, (list, tuple)) else [out]:
        artifacts.check_output(path, settings.overwrite, suffixes=(".h5",))
    backup = prepare_backup(out, settings, run)
    try:
        with runtime.setup_kept():
            start(settings)
            with settings.distribution().scope():
                yield backup
    except BaseException as e:
        kept = backup.exists() and has_checkpoint(backup)
        if backup.exists() and not kept:
            finish_backup(backup)
        if isinstance(e, KeyboardInterrupt):
            _say_what_was_kept(e, backup, kept)
        raise
    finish_backup(backup)


def _say_what_was_kept(interrupt, backup, kept):
    """Attach to a Ctrl-C what an interrupted training kept: `cladec_hint` (the command line reads it)
    and a note in the traceback a notebook shows."""
    hint = (f"{backup} keeps the last backed-up epoch: rerun the same command with {option('resume')}"
            if kept else "no epoch had been backed up yet (a backup is saved at the end of an "
            f"epoch, at most every {option('backup_interval')} seconds), so nothing is kept")
    interrupt.cladec_hint = hint
    if hasattr(interrupt, "add_note"):  # Python 3.11+
        interrupt.add_note(f"cladec: {TrainingError(hint)}")


def trained_provenance(run, history, metrics):
    """What a trained model records: its `run_settings` and its metrics."""
    final_loss = history["loss"][-1] if history.get("loss") else None
    return {**artifacts.base_provenance(run["kind"]), **run, "metrics": {**metrics, "train_loss": final_loss}}


class _WithoutRetracingWarnings(logging.Filter):
    """Drops TensorFlow's warning that a tf.function was traced again: cladec predicts with many small
    models (encoders, stacked decoders, measuring models), each traced once, which TensorFlow counts as
    retracing; nothing the user could change."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def _without_retracing_warnings():
    logger, dropped = logging.getLogger("tensorflow"), _WithoutRetracingWarnings()
    logger.addFilter(dropped)
    try:
        yield
    finally:
        logger.removeFilter(dropped)


def predict(model, data, batch_size=512, whole_batches=None):
    """Model outputs for a NumPy array or a feed of image batches: NumPy arrays (a list or dict for
    several outputs).

    With `whole_batches` (default: under JAX, which compiles a program per input shape), an input of
    several batches whose last one is shorter has that batch padded to a whole one and the padding's
    outputs dropped, so each model compiles one prediction program, not one more per split size. An
    input of one batch is fed as it is (padding it would add work and save no program), and so is a
    tf.data pipeline.
    """
    if isinstance(data, np.ndarray) and len(data) == 0:
        return np.zeros((0,) + tuple(model.output.shape[1:]), np.float32)
    if whole_batches is None:
        whole_batches = keras.backend.backend() == "jax"
    if whole_batches and isinstance(data, np.ndarray) and len(data) > batch_size and len(data) % batch_size:
        data = ArrayFeed(data, np.zeros(len(data), np.int8), batch_size, images_only)
    with _without_retracing_warnings():
        if whole_batches and isinstance(data, (ArrayFeed, FileFeed)) and len(data) > 1 and \
                data.order.n % data.batch_size:
            padded = WholeBatches(data)
            return keras.tree.map_structure(lambda o: o[:padded.n], model.predict(padded, verbose=0))
        if isinstance(data, np.ndarray) and keras.backend.backend() == "tensorflow":
            # Keras' array adapter would copy the whole array into tensors (see ArrayFeed.tf_dataset).
            data = ArrayFeed(data, np.zeros(len(data), np.int8), batch_size, images_only).tf_dataset()
        if isinstance(data, np.ndarray):
            return model.predict(data, batch_size=batch_size, verbose=0)
        return model.predict(data, verbose=0)
