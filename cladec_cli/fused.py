"""Several models trained in one pass: one multi-output Keras model in which every model keeps its own
outputs, losses and parameters. The gradient of the summed loss with respect to one model's
parameters is the gradient of that model's own loss, so each trains as it would alone. Under float16
they train one after another instead (`one_at_a_time`)."""

import dataclasses
import re
from pathlib import Path

import keras

from cladec_cli import artifacts, distribute
from cladec_cli.errors import UsageError, counted, option
from cladec_cli.training import backup_folder, check_backup, finish_backup, saved_by


def seeded(seed, build):
    """`build()` right after seeding: each of several models starts from the weights it would get alone."""
    keras.utils.set_random_seed(int(seed))
    return build()


def named_output(tensor, name):
    """`tensor` as a model output called `name`: the key of its loss, its target and its history entry."""
    return keras.layers.Identity(name=name, dtype="float32")(tensor)  # outputs stay float32 in mixed precision


def output_labels(layers):
    """One label per layer for the outputs of a pass that trains a model per layer, so that progress lines
    read `rec_<label>_loss`: the layer's name as a Keras name allows it, numbered by position where two
    names would be the same."""
    names = [re.sub(r"[^A-Za-z0-9_]+", "_", layer.name).strip("_") or "layer" for layer in layers]
    return names if len(set(names)) == len(names) else [f"{i}_{name}" for i, name in enumerate(names, start=1)]


def renamed(model, name):
    """The same one-input, one-output functional model (same layers, same weights) under another name."""
    return keras.Model(model.inputs[0], model.outputs[0], name=name)


def model_history(history, weights):
    """One model's training loss from the history of a pass that trained several: the weighted sum of
    its outputs' losses (`weights`: output name -> loss weight), as {"loss": [one value per epoch]}.
    Keras reports per-output losses only for models with several outputs; with one, its total is it.
    Under TensorFlow, whose steps see a batch of unknown size, Keras averages the per-output losses over
    batches, not images, so where the last batch is short they differ slightly from a model's loss
    trained alone (its weights do not)."""
    keys = [f"{name}_loss" for name in weights]
    if not all(key in history for key in keys):
        return {"loss": history.get("loss", [])}
    return {"loss": [sum(w * v for w, v in zip(weights.values(), values))
                     for values in zip(*(history[key] for key in keys))]}


def one_output_each(layers, outs):
    """The output paths, one per layer and none twice."""
    if isinstance(outs, (str, Path)):
        raise UsageError(f"{option('outs')} takes a list of output files, one per layer, not the single path {outs!r}")
    outs = [Path(out) for out in outs]
    if len(outs) != len(layers):
        raise UsageError(f"{counted(len(layers), 'layer')} but {counted(len(outs), 'output file')} in "
                         f"{option('outs')}")
    if len(set(outs)) != len(outs):
        raise UsageError("two layers would be saved to the same file")
    return outs


def one_at_a_time(settings, n):
    """Whether `n` models meant to train in one pass must train one after another instead: under float16
    one dynamic loss scale would serve the whole pass, so a step whose gradients overflow in one model
    would be skipped for all of them."""
    return n > 1 and settings.runtime().precision == "float16"


def how_trained(settings, n):
    """How `n` models of one run train, as messages say it: 'in one pass' or 'one after another (float16)'."""
    return "one after another (float16)" if one_at_a_time(settings, n) else "in one pass"


def in_turn(outs, runs, settings, train_one):
    """Train the models of a several-model run one after another: `train_one(i, own_settings)` trains the
    i-th and saves it at `outs[i]` (its run settings: `runs[i]`), returning (model, provenance record).
    `own_settings` are `settings` with, under --tensorboard, a log subfolder of the model's own.

    Before the first model trains, every output is checked, and so is every backup an interrupted run
    left: each model's own, and that of a one-pass run of all of them, which cannot be taken up.
    Resuming, the models that the interrupted run saved with their settings are loaded, as saved (float32
    variables), not trained again.
    """
    done = [settings.resume and saved_by(out, run) for out, run in zip(outs, runs)]
    one_pass = backup_folder(outs)
    if distribute.writes_files() and one_pass.exists() and not settings.overwrite:
        raise UsageError(f"an interrupted run of these models in one pass is kept in {one_pass}; under float16 "
                         f"they train one after another and cannot take it up; pass {option('overwrite')} to "
                         f"start again")
    for out, run, finished in zip(outs, runs, done):
        if finished:
            continue
        if not settings.resume and not settings.overwrite and saved_by(out, run):
            raise UsageError(f"{out} is there from a run with these settings (under float16 its models train one "
                             f"after another); pass {option('resume')} to keep it and train the rest, or "
                             f"{option('overwrite')} to start again")
        artifacts.check_output(out, settings.overwrite, suffixes=(".h5",))
        check_backup(out, settings, run)
    loaded = {i: artifacts.load_model(out, run["kind"], settings.trust_model)
              for i, (out, run, finished) in enumerate(zip(outs, runs, done)) if finished}
    finish_backup(one_pass)
    logs = _log_folders(outs, settings.tensorboard)
    return [loaded[i] if i in loaded else
            train_one(i, settings if logs[i] is None else dataclasses.replace(settings, tensorboard=logs[i]))
            for i in range(len(outs))]


def _log_folders(outs, tensorboard):
    """Each output's TensorBoard subfolder of `tensorboard` (None without): named after the file, or, where
    two files share a name, after its position as well."""
    if not tensorboard:
        return [None] * len(outs)
    stems = [Path(out).stem for out in outs]
    unique = len(set(stems)) == len(stems)
    return [str(Path(tensorboard) / (stem if unique else f"{i + 1}_{stem}")) for i, stem in enumerate(stems)]
