"""Training, saving and loading the classifier to be explained."""

import keras
import numpy as np

from cladec_cli import artifacts, batchnorm
from cladec_cli.architectures import build_classifier
from cladec_cli.cloning import clone_graph, clone_layer
from cladec_cli.data.names import same_dataset
from cladec_cli.errors import DataError, UsageError, option
from cladec_cli.frozen import frozen
from cladec_cli.layers import SCORE_ACTIVATIONS, check_supported, is_augmentation, is_submodel, output_activation
from cladec_cli.pixels import in_range
from cladec_cli.training import compile_model, fit, predict, run_settings, start, trained_provenance, training_run


def outputs_probabilities(model):
    """True when the classifier's output is a softmax (probabilities), False for logits
    (`layers.output_activation`)."""
    return output_activation(model) == "softmax"


def classification_loss(model):
    """Sparse categorical cross-entropy matching the classifier's output (logits or probabilities)."""
    check_cross_entropy(model)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=not outputs_probabilities(model))


def check_cross_entropy(model):
    """Refuse a classifier whose scores are not logits or a softmax, where its cross-entropy is needed
    (the classifier's loss on reconstructions, Acc Eval's classifiers): a sigmoid scores each class on
    its own, as a multi-label classifier does."""
    if output_activation(model) == "sigmoid":
        raise UsageError(f"model {model.name!r} ends in a sigmoid, which scores each class on its own (as a "
                         "multi-label classifier does); the classifier's cross-entropy needs logits or a softmax: "
                         f"save the model without its last sigmoid, or do without it ({option('alpha', 0)}; "
                         f"{option('with_acc_eval=False')})")


def logits_model(model):
    """`model` when it outputs logits; for a classifier ending in a softmax (a Softmax or softmax
    Activation layer, `keras.ops.softmax`, or a layer with a softmax activation such as a Dense head),
    a model sharing its weights that stops before the softmax. The softmax may sit inside a nested
    model (a head, or the whole classifier wrapped in another) and be followed by steps that pass values
    on unchanged (reshapes, dropout, casts: `_PASSING_VALUES_ON`), which are applied to the logits instead;
    after any other step (a clip, a log) the logits are refused. Gradient-based attributions need them."""
    if not outputs_probabilities(model):
        return model
    return keras.Model(model.inputs, _logits(model.outputs[0], model.name), name=f"{model.name}_logits")


def _logits(tensor, model_name):
    """A tensor of the logits in front of the softmax that makes `tensor`, from the same inputs; the
    original graph gains no nodes (steps applied anew are copies, nested models new models)."""
    history = tensor._keras_history
    last = history.operation  # a layer, or an operation such as keras.ops.softmax, which is no layer
    node = last._inbound_nodes[history.node_index]
    activation = SCORE_ACTIVATIONS.get(getattr(getattr(last, "activation", None), "__name__", None))
    if is_submodel(last):
        inner = keras.Model(last.inputs, _logits(last.outputs[history.tensor_index], model_name), name=last.name)
        return inner(*node.arguments.args, **node.arguments.kwargs)
    if type(last).__name__ == "Softmax" or (isinstance(last, keras.layers.Activation) and activation == "softmax"):
        return node.input_tensors[0]
    if getattr(last, "weights", None) and activation == "softmax":
        linear = type(last).from_config({**last.get_config(), "activation": "linear", "name": f"{last.name}_logits"})
        logits = linear(node.input_tensors[0])
        linear.set_weights(last.get_weights())
        return logits
    if _passes_values_on(last) and len(node.input_tensors) == 1:
        args, kwargs = node.arguments.fill_in({id(node.input_tensors[0]): _logits(node.input_tensors[0], model_name)})
        return clone_layer(last)(*args, **kwargs)
    raise UsageError(f"cannot find the logits in front of {model_name!r}'s softmax ({last.name} is neither the softmax "
                     "nor a step that passes its values on unchanged); gradient-based attributions need them: save "
                     "the classifier with a separate Softmax layer as its last step")


# Steps that pass their input's values on unchanged in inference, only rearranged, selected or cast: after a
# softmax they give probabilities whose logits are those steps applied to the logits. A clip, a log or a
# ReLU would not (clipped logits have no gradient; a log of logits is NaN).
_PASSING_VALUES_ON = {"Reshape", "Flatten", "Permute", "Identity", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
                      "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "Cast", "Squeeze",
                      "ExpandDims", "GetItem", "Transpose"}


def _passes_values_on(operation):
    """Whether `operation` is one of `_PASSING_VALUES_ON`, or a linear Activation layer."""
    if isinstance(operation, keras.layers.Activation):
        return getattr(operation.activation, "__name__", None) == "linear"
    return type(operation).__name__ in _PASSING_VALUES_ON


def fresh_copy(model, augmentation=True):
    """A newly initialised, trainable model of the same architecture, each layer computing in its own dtype
    policy. Weights are not copied, except the statistics of adapted Normalization layers: they describe
    the data, are not trained, and a copy without them would take unnormalised images. Without
    `augmentation`, Keras' augmentation layers that pass images on unchanged in inference (all but
    RandomCrop) become Identity layers of the same name: an autoencoder learns to give back its input."""
    copy = clone_graph(model, replace=None if augmentation else _without_augmentation)
    _keep_normalization(model, copy)
    _unfreeze(copy)
    return copy


def _without_augmentation(layer):
    """An Identity layer in place of an augmentation `layer` whose output has its input's shape, else None."""
    if is_augmentation(layer) and tuple(layer.input.shape) == tuple(layer.output.shape):
        return keras.layers.Identity(name=layer.name)
    return None


def _keep_normalization(model, copy):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _keep_normalization(layer, copy.get_layer(layer.name))
        elif isinstance(layer, keras.layers.Normalization) and layer.built:
            twin = copy.get_layer(layer.name)
            twin.set_weights(layer.get_weights())
            twin.finalize_state()  # what the layer computes with is derived from its weights here


def _unfreeze(model):
    # clone_model copies each layer's `trainable` flag, and a frozen encoder built on the original
    # freezes its layers; setting the flag on the outer model alone does not reach them.
    model.trainable = True
    for layer in model.layers:
        layer.trainable = True
        if isinstance(layer, keras.Model):
            _unfreeze(layer)


def compile_classifier(model, settings, data, loss=None):
    # No training metrics: per-step accuracy costs a fifth of an epoch for a model this small, and
    # the test accuracy is measured once training ends.
    compile_model(model, settings, data, loss or classification_loss(model))


def classifier_on(model, pixel_range="0,1", inputs_from=None):
    """`model` as it is trained and tested on [0, 1] images: behind a rescaling to its `pixel_range`
    and, given a frozen image -> image model `inputs_from` (a reconstructor), on that model's outputs
    (computed batch by batch in inference mode). Shares `model`'s weights."""
    scaled = in_range(model, pixel_range)
    if inputs_from is None:
        return scaled
    inputs = keras.Input(shape=tuple(inputs_from.inputs[0].shape[1:]), name="image")
    return keras.Model(inputs, scaled(frozen_outputs(inputs_from, inputs)), name=f"{model.name}_on_outputs")


def frozen_outputs(model, tensor):
    """`model` frozen and called on `tensor` in inference mode, also inside a model that trains."""
    return frozen(model)(tensor)


def accuracy(model, split, batch_size=512):
    """Share of `split` that `model` classifies correctly."""
    if len(split) == 0:
        return float("nan")
    return float(np.mean(predictions(model, split, batch_size) == split.labels))


def predictions(model, split, batch_size=512):
    """The class `model` predicts for each image of `split`."""
    if len(split) == 0:
        return np.zeros(0, np.int64)
    return predict(model, split.dataset(batch_size, labels=False)).argmax(axis=1)


def fit_classifier(model, train_split, settings, backup=None, pixel_range="0,1"):
    """Train a classifier model on a split with the shared settings; returns the history.

    The split's [0, 1] images reach the model rescaled to its `pixel_range` (`classifier_on`).
    """
    start(settings)
    data = train_split.dataset(settings.batch_size, shuffle=True, seed=settings.seed)
    trained = classifier_on(model, pixel_range)
    compile_classifier(trained, settings, data, loss=classification_loss(model))
    return fit(trained, data, settings, backup)


def train_classifier(dataset, settings, out, arch="paper", bn_statistics="moving"):
    """Train the paper's classifier on `dataset`, evaluate it and save it with provenance at `out`.

    The saved classifier takes images in the dataset's `pixel_range`; it is trained on them rescaled.
    `bn_statistics` "data" replaces BatchNorm's moving statistics by those of the training images
    once training ends (see `cladec_cli.batchnorm`); "moving" keeps what training left.
    Returns (model, provenance record): the record is what `train_decoder` and `train_refae` take as
    `classifier_provenance` (for a classifier of your own, pass None).
    """
    batchnorm.check_choice(bn_statistics, dataset.train)
    run = run_settings("classifier", dataset, settings, arch=arch, bn_statistics=bn_statistics)
    with training_run(out, settings, run) as backup:
        model = build_classifier(dataset.image_shape, dataset.n_classes, arch)
        history = fit_classifier(model, dataset.train, settings, backup, dataset.pixel_range)
        if bn_statistics == "data":
            batchnorm.statistics_from_split(model, dataset.train, dataset.pixel_range)
        test_accuracy = accuracy(classifier_on(model, dataset.pixel_range), dataset.test)
        provenance = trained_provenance(run, history, {"test_accuracy": test_accuracy})
        record = artifacts.save_model(model, out, provenance, settings.overwrite)
    return model, record


def load_classifier(path, trust=False):
    """A classifier file (cladec's or any Keras classifier) and its provenance; `trust` allows Lambda layers."""
    model, provenance = artifacts.load_model(path, kind="classifier", trust=trust)
    model = with_channel_axis(model)
    check_supported(model)
    return model, provenance


def with_channel_axis(model):
    """A functional or Sequential classifier of gray images of shape (H, W), without a channel axis (as
    `Flatten(input_shape=(28, 28))` in Keras' own Fashion-MNIST tutorial builds it), as a model of (H, W, 1)
    images: the classifier nested behind a Reshape. Its layers are then named with the classifier's name
    in front (`sequential/dense`), or by their own names. Any other model as it is."""
    inputs = getattr(model, "inputs", None) or []
    shape = tuple(inputs[0].shape[1:]) if len(inputs) == 1 else ()
    if not is_submodel(model) or len(shape) != 2 or None in shape:
        return model
    image = keras.Input((*shape, 1), name="image")
    return keras.Model(image, model(keras.layers.Reshape(shape, name="without_channel_axis")(image)),
                       name=f"{model.name}_with_channel_axis")


# Test images sampled to tell a classifier at chance on its data.
CHANCE_SAMPLE = 512


def sampled_accuracy(model, split, pixel_range="0,1", count=CHANCE_SAMPLE, seed=0):
    """The classifier's accuracy on `count` images drawn at random from `split` (all, when it has fewer)."""
    chosen = np.random.default_rng(seed).choice(len(split), min(count, len(split)), replace=False)
    return accuracy(classifier_on(model, pixel_range), split.subset(sorted(chosen.tolist())))


def chance_warning(classifier, dataset, provenance=None):
    """A warning, or None: whether the classifier does no better than chance on the dataset's test images
    (its accuracy on a sample lies within three standard errors of guessing), so that its pixel range,
    resize or class order may not be those it was trained with, or it is untrained. None for data other
    than the dataset `provenance` (the classifier's record) names, on which it may rightly do no better,
    and for a classifier that records 0 epochs of training (left untrained on purpose)."""
    recorded = (provenance or {}).get("dataset")
    if (recorded is not None and not same_dataset(recorded, dataset.name)) or dataset.n_classes < 2 or \
            (provenance or {}).get("epochs") == 0:
        return None
    accuracy = sampled_accuracy(classifier, dataset.test, dataset.pixel_range, CHANCE_SAMPLE)
    chance, sampled = 1 / dataset.n_classes, min(CHANCE_SAMPLE, len(dataset.test))
    if accuracy >= chance + 3 * (chance * (1 - chance) / sampled) ** 0.5:
        return None
    line = (f"the classifier gets {accuracy:.0%} of {sampled} sampled test images right, about chance for "
            f"{dataset.n_classes} classes: unless it is untrained, check that {option('pixel_range')} "
            f"({dataset.pixel_range}), {option('resize')} and the order of the classes are those it was trained with")
    if batchnorm.batchnorm_layers(classifier):
        line += (", and that its BatchNorm layers' moving statistics have caught up with its weights (after a "
                 "short training they lag, and Keras' own evaluate is at chance too)")
    return line


def input_warning(classifier, dataset, provenance=None):
    """The warning about what the classifier is fed, or None: `pixel_range_warning`, else `chance_warning`."""
    return pixel_range_warning(classifier, dataset.pixel_range) or chance_warning(classifier, dataset, provenance)


def pixel_range_warning(classifier, pixel_range):
    """A warning, or None: whether the first step that the classifier's images reach (through nested
    models, reshapes and augmentation) is a Rescaling by about 1/255 (1/255 or 1/127.5, as Keras'
    preprocessing examples and EfficientNet begin), so that it takes pixel values 0..255, while it is fed
    `pixel_range` other than 0,255. A ReLU network's decisions can survive inputs 255 times too small,
    so the chance warning need not catch this."""
    layer = None if pixel_range == "0,255" else _first_step(classifier)
    scale = layer.get_config().get("scale") if isinstance(layer, keras.layers.Rescaling) else None
    if not isinstance(scale, (int, float)) or not 0 < scale <= 1 / 100:
        return None
    return (f"the classifier's first step, {layer.name} (Rescaling by {scale:.4g}), takes pixel values 0..255, "
            f"but cladec feeds it {pixel_range}: pass {option('pixel_range')} 0,255 unless it was trained on "
            f"images in {pixel_range}")


def _first_step(model):
    """The first layer that computes on `model`'s images, looking through nested models and the steps that
    pass values on (reshapes, dropout, augmentation); None where the images go to several layers."""
    tensor = model.inputs[0]
    while True:
        taking = [(layer, node) for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)
                  for node in layer._inbound_nodes if any(t is tensor for t in node.input_tensors)]
        if len(taking) != 1:
            return None
        layer, node = taking[0]
        if is_submodel(layer):
            model, tensor = layer, layer.inputs[0]
        elif _passes_values_on(layer) or is_augmentation(layer):
            tensor = node.output_tensors[0]
        else:
            return layer


def check_fits(model, dataset, pixel_range=None):
    """Refuse data whose images or classes do not fit the classifier, or whose pixel range is not the
    `pixel_range` it takes (when given: the one its record, or its decoder's, holds)."""
    if pixel_range is not None and dataset.pixel_range != pixel_range:
        raise DataError(f"the dataset's pixel range is {dataset.pixel_range} but the classifier takes images in "
                        f"{pixel_range}; load the data with {option('pixel_range')} {pixel_range!r}")
    want = tuple(int(d) for d in model.inputs[0].shape[1:])
    if tuple(dataset.image_shape) != want:
        raise DataError(f"dataset images are {'x'.join(map(str, dataset.image_shape))} but the classifier "
                        f"expects {'x'.join(map(str, want))}; load the data with load_dataset(..., image_shape={want})")
    n_out = int(model.outputs[0].shape[-1])
    if dataset.n_classes > n_out:
        raise DataError(f"dataset has {dataset.n_classes} classes but the classifier predicts {n_out}")
