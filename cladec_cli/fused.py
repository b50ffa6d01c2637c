"""Several models trained in one pass: one multi-output Keras model in which every model keeps its own
outputs, losses and parameters. The gradient of the summed loss with respect to one model's
parameters is the gradient of that model's own loss, so each trains as it would alone."""

from pathlib import Path

import keras

from cladec_cli.errors import UsageError


def seeded(seed, build):
    """`build()` right after seeding: each of several models starts from the weights it would get alone."""
    keras.utils.set_random_seed(int(seed))
    return build()


def named_output(tensor, name):
    """`tensor` as a model output called `name`: the key of its loss, its target and its history entry."""
    return keras.layers.Identity(name=name, dtype="float32")(tensor)  # outputs stay float32 in mixed precision


def renamed(model, name):
    """The same one-input, one-output functional model (same layers, same weights) under another name."""
    return keras.Model(model.inputs[0], model.outputs[0], name=name)


def model_history(history, weights):
    """One model's training loss from the history of a pass that trained several: the weighted sum of
    its outputs' losses (`weights`: output name -> loss weight), as {"loss": [one value per epoch]}.
    Keras reports per-output losses only for models with several outputs; with one, its total is it."""
    keys = [f"{name}_loss" for name in weights]
    if not all(key in history for key in keys):
        return {"loss": history.get("loss", [])}
    return {"loss": [sum(w * v for w, v in zip(weights.values(), values))
                     for values in zip(*(history[key] for key in keys))]}


def one_output_each(layers, outs):
    """The output paths, one per layer and none twice."""
    outs = [Path(out) for out in outs]
    if len(outs) != len(layers):
        raise UsageError(f"{len(layers)} layers but {len(outs)} output files")
    if len(set(outs)) != len(outs):
        raise UsageError("two layers would be saved to the same file")
    return outs
