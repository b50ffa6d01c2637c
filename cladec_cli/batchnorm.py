"""BatchNorm moving statistics computed on data.

An untrained classifier's BatchNorm layers hold their initial moving mean 0 and variance 1, so in
inference mode its activations are far from what the same network gives with batch statistics.
`statistics_from_data` replaces each BatchNorm's moving mean and variance by the mean and variance of
its inputs over a split, layer after layer (each layer's inputs computed with the earlier layers'
new statistics), as inference with "population statistics" assumes.
"""

import collections
import inspect
import math

import keras
import numpy as np

from cladec_cli import memory
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
    (as `model` takes them), in inference mode, nested models included. Returns the number of layers set.

    Where the layers' outputs over all `images` that a sweep through the graph holds at once (each until
    the last layer that reads it has run) fit, twice over, in the memory a command may hold
    (`memory.hold_limit`), one sweep sets them, each layer run once on all the images (on the CPU);
    otherwise each BatchNorm's inputs come from a model cut at it, a compiled program and a pass over the
    images apiece (for a network with a hundred BatchNorm layers, as DenseNet121, that costs minutes)."""
    if _sweepable(model) and 2 * _activation_bytes(model) * len(images) <= memory.hold_limit():
        set_layers = []
        with keras.device("cpu:0"):  # the host's memory, which the limit measures, also beside a GPU
            _swept(model, keras.ops.convert_to_tensor(np.asarray(images, np.float32)), set_layers)
        return len(set_layers)
    return _statistics_cut_by_cut(model, images, batch_size)


def _graph(model):
    """The functional graph of `model` (a built Sequential model keeps one)."""
    return model._functional if isinstance(model, keras.Sequential) else model


def _sweepable(model):
    """Whether `_swept` can run through `model`: a graph of one input, as every model nested in it."""
    return all(hasattr(_graph(m), "_nodes_by_depth") and len(m.inputs) == 1 for m in [model, *_submodels(model)])


def _submodels(model):
    for layer in model.layers:
        if is_submodel(layer):
            yield layer
            yield from _submodels(layer)


def _walk(graph, held):
    """The nodes of a functional graph that compute something, each after the nodes it reads from. `held`
    maps tensors (by id) to what the caller holds for them, the graph's input first: the caller puts each
    node's outputs in it, and once the node is done, the tensors it was the last to read are dropped (a
    graph's outputs are kept)."""
    nodes = [node for depth in sorted(graph._nodes_by_depth, reverse=True) for node in graph._nodes_by_depth[depth]
             if node.operation is not None and not node.is_input]
    readers = collections.Counter(id(tensor) for node in nodes for tensor in node.input_tensors)
    readers.update(id(tensor) for tensor in graph.outputs)
    for node in nodes:
        yield node
        for tensor in node.input_tensors:
            readers[id(tensor)] -= 1
            if readers[id(tensor)] == 0:
                held.pop(id(tensor), None)


def _tensor_bytes(tensor):
    return 4 * math.prod(d or 1 for d in tensor.shape[1:])


def _activation_bytes(model):
    """float32 bytes an image of the layers' outputs held at once, at the most, by a sweep through `model`
    (`_swept`), nested models included."""
    graph = _graph(model)
    held, peak = {id(tensor): _tensor_bytes(tensor) for tensor in graph.inputs}, 0
    for node in _walk(graph, held):
        inner = _activation_bytes(node.operation) if is_submodel(node.operation) else 0  # its own sweep's
        outputs = sum(_tensor_bytes(tensor) for tensor in node.outputs)
        peak = max(peak, sum(held.values()) + max(inner, outputs))
        held.update((id(tensor), _tensor_bytes(tensor)) for tensor in node.outputs)
    return peak


def _swept(model, x, set_layers):
    """`model`'s outputs on the tensor `x` in inference mode, computed node by node on all of `x`, each
    BatchNorm's statistics set from its inputs before it runs (appended to `set_layers`); a layer's outputs
    are let go once the last layer that reads them has run."""
    def operation_fn(operation):
        if isinstance(operation, keras.layers.BatchNormalization):
            def normalised(inputs, *args, **kwargs):
                _assign(operation, _moments(operation, [keras.ops.convert_to_numpy(inputs)]))
                set_layers.append(operation)
                return operation(inputs, training=False)
            return normalised
        if is_submodel(operation):  # swept too, so that it holds what `_activation_bytes` counts
            return lambda inputs, *args, **kwargs: _swept(operation, inputs, set_layers)
        if isinstance(operation, keras.layers.Layer) and "training" in inspect.signature(operation.call).parameters:
            return lambda *args, **kwargs: operation(*args, **{**kwargs, "training": False})
        return operation

    graph = _graph(model)
    held = {id(graph.inputs[0]): x}
    for node in _walk(graph, held):
        args, kwargs = node.arguments.fill_in(held)
        outputs = operation_fn(node.operation)(*args, **kwargs)
        held.update((id(tensor), value) for tensor, value in zip(node.outputs, keras.tree.flatten(outputs)))
    return keras.tree.pack_sequence_as(graph._outputs_struct, [held[id(tensor)] for tensor in graph.outputs])


def _statistics_cut_by_cut(model, images, batch_size):
    done = 0
    for layer in model.layers:
        if is_submodel(layer) and batchnorm_layers(layer):
            # What the outer graph feeds the nested model, over all images, is the nested model's data.
            fed = layer._inbound_nodes[0].input_tensors[0]
            inner = images if fed is model.inputs[0] else _outputs(keras.Model(model.inputs[0], fed), images,
                                                                   batch_size)
            done += _statistics_cut_by_cut(layer, inner, batch_size)
        elif isinstance(layer, keras.layers.BatchNormalization):
            probe = keras.Model(model.inputs[0], layer.input)
            _assign(layer, _moments(layer, _batch_outputs(probe, images, batch_size)))
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


def _moments(layer, batches):
    """Mean and variance over `batches` (NumPy arrays of `layer`'s inputs) of each channel, in float64."""
    axes = [layer.axis] if isinstance(layer.axis, int) else list(layer.axis)
    if len(axes) != 1 or axes[0] not in (-1, len(layer.input.shape) - 1):
        raise ValueError(f"{layer.name}: only BatchNorm over the last axis is supported")
    total, total_sq, count = 0.0, 0.0, 0
    for batch in batches:
        batch = batch.reshape(-1, batch.shape[-1])
        for start in range(0, len(batch), 65536):  # in float64 a part at a time
            x = batch[start:start + 65536].astype(np.float64)
            total, total_sq, count = total + x.sum(axis=0), total_sq + np.square(x).sum(axis=0), count + len(x)
    mean = total / count
    return mean, np.maximum(total_sq / count - np.square(mean), 0.0)


def _assign(layer, moments):
    mean, variance = moments
    layer.moving_mean.assign(mean.astype("float32"))
    layer.moving_variance.assign(variance.astype("float32"))
