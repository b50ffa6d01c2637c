"""BatchNorm moving statistics computed on data.

An untrained classifier's BatchNorm layers hold their initial moving mean 0 and variance 1, so in
inference mode its activations are far from what the same network gives with batch statistics.
`statistics_from_data` replaces each BatchNorm's moving mean and variance by the mean and variance of
its inputs over a split, layer after layer (each layer's inputs computed with the earlier layers'
new statistics), as inference with "population statistics" assumes.
"""

import keras
import numpy as np

from cladec_cli.data.feed import padded_to
from cladec_cli.errors import UsageError, option
from cladec_cli.layers import is_submodel
from cladec_cli.pixels import to_range

CHOICES = ("moving", "data")


def check_choice(bn_statistics, *splits, name="bn_statistics"):
    """Refuse an unknown `bn_statistics`, and "data" for `splits` of which one is not held in memory
    fitted; `name` is the parameter that chose it, for the message."""
    if bn_statistics not in CHOICES:
        raise UsageError(f"unknown BatchNorm statistics {bn_statistics!r}; choose moving or data")
    streamed = [split for split in splits if not split.in_memory]
    if bn_statistics == "data" and streamed:
        raise UsageError(f"{option(name, 'data')}: BatchNorm statistics from data need a dataset held in memory; "
                         f"in this one {streamed[0].how_read()}"
                         + (f" (a smaller {option('limit')} holds it)" if streamed[0].fitted_per_batch else ""))


def statistics_from_split(model, split, pixel_range="0,1"):
    """`statistics_from_data` over the images of an in-memory `split`, rescaled to the `pixel_range`
    `model` takes. Returns the number of layers set."""
    return statistics_from_data(model, to_range(split.images, pixel_range))


def batchnorm_layers(model):
    """The BatchNormalization layers of `model` (nested models included), first to last."""
    found = []
    for layer in model.layers:
        if is_submodel(layer):
            found += batchnorm_layers(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
    return found


def statistics_from_data(model, images, batch_size=512):
    """Set every BatchNorm's moving mean and variance of `model` to those of its inputs over `images`
    (as `model` takes them), in inference mode, nested models included. Returns the number of layers set."""
    done = 0
    for layer in model.layers:
        if is_submodel(layer) and batchnorm_layers(layer):
            # What the outer graph feeds the nested model, over all images, is the nested model's data.
            fed = layer._inbound_nodes[0].input_tensors[0]
            inner = images if fed is model.inputs[0] else _outputs(keras.Model(model.inputs[0], fed), images,
                                                                   batch_size)
            done += statistics_from_data(layer, inner, batch_size)
        elif isinstance(layer, keras.layers.BatchNormalization):
            _set_statistics(layer, keras.Model(model.inputs[0], layer.input), images, batch_size)
            done += 1
    return done


def _batch_outputs(probe, images, batch_size):
    """`probe`'s outputs over `images` in inference mode, batch by batch, as NumPy arrays, through Keras'
    compiled prediction step rather than eager calls. A shorter last batch after whole ones is padded to a
    whole batch (`padded_to`) and the padding's outputs dropped, so each probe compiles one program."""
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        outputs = probe.predict_on_batch(padded_to(batch, batch_size) if start else batch)
        yield outputs[:len(batch)]


def _outputs(probe, images, batch_size):
    """`probe`'s outputs over `images` in inference mode as one float32 array."""
    return np.concatenate(list(_batch_outputs(probe, images, batch_size))).astype(np.float32)


def _set_statistics(layer, probe, images, batch_size):
    """Set `layer`'s moving mean and variance to those of `probe`'s outputs (its inputs) over `images`."""
    axes = [layer.axis] if isinstance(layer.axis, int) else list(layer.axis)
    if len(axes) != 1 or axes[0] not in (-1, len(layer.input.shape) - 1):
        raise ValueError(f"{layer.name}: only BatchNorm over the last axis is supported")
    total, total_sq, count = 0.0, 0.0, 0
    for x in _batch_outputs(probe, images, batch_size):
        x = x.astype(np.float64).reshape(-1, x.shape[-1])
        total, total_sq, count = total + x.sum(axis=0), total_sq + np.square(x).sum(axis=0), count + len(x)
    mean = total / count
    variance = np.maximum(total_sq / count - np.square(mean), 0.0)
    layer.moving_mean.assign(mean.astype("float32"))
    layer.moving_variance.assign(variance.astype("float32"))
