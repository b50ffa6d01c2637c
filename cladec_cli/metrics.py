"""The paper's measures of an explanation: Rec. Loss, Acc Eval and (cheap) agreement."""

from typing import NamedTuple

import keras
import numpy as np

from cladec_cli import batchnorm, runtime
from cladec_cli.classifier import (accuracy, classification_loss, classifier_on, compile_classifier, fresh_copy,
                                   frozen_outputs, predictions)
from cladec_cli.data.feed import ArrayFeed
from cladec_cli.data.preprocess import stratified_indices
from cladec_cli.data.split import Split
from cladec_cli.errors import UsageError
from cladec_cli.fused import named_output, one_at_a_time, renamed, seeded
from cladec_cli.pixels import to_range
from cladec_cli.reconstruction import rec_loss  # noqa: F401  (part of this module's API)
from cladec_cli.reconstruction import sse_outputs
from cladec_cli.stacked import Stacked
from cladec_cli.training import fit, predict, start


def agreement(predict_classes, images, reconstructions, original_classes=None):
    """Share of images whose reconstruction gets the same predicted class as the original.

    `original_classes`, when the caller already has them, saves predicting the originals again.
    """
    if len(images) == 0:
        return float("nan")
    if original_classes is None:
        original_classes = predict_classes(images)
    return float(np.mean(original_classes == predict_classes(reconstructions)))


def split_measures(classifier, reconstructors, split, batch_size=256):
    """One pass over `split`, batch by batch, so a split that streams from disk is never held whole.

    `classifier` and the image -> image `reconstructors` ({method: model}) take [0, 1] images.
    Returns the classifier's accuracy and, per method, Rec. Loss and agreement (the share of images
    whose reconstruction gets the original's predicted class).
    """
    if len(split) == 0:
        return {"accuracy": float("nan"), "rec_loss": {m: float("nan") for m in reconstructors},
                "agreement": {m: float("nan") for m in reconstructors}}
    outputs = predict(_measuring_model(classifier, reconstructors), split.dataset(batch_size, labels=False))
    predicted = outputs["original"].argmax(axis=1)
    return {"accuracy": float(np.mean(predicted == split.labels)),
            "rec_loss": {m: float(np.mean(outputs[f"sse_{m}"], dtype=np.float64)) for m in reconstructors},
            "agreement": {m: float(np.mean(outputs[f"scores_{m}"].argmax(axis=1) == predicted))
                          for m in reconstructors}}


def _measuring_model(classifier, reconstructors):
    """image -> the classifier's scores of the image and, per method, its reconstruction's per-image
    SSE and the classifier's scores of the reconstruction."""
    images = keras.Input(shape=tuple(classifier.inputs[0].shape[1:]), name="image")
    outputs = {"original": classifier(images, training=False), **sse_outputs(images, reconstructors, classifier)}
    return keras.Model(images, outputs, name="measures")


class BatchNormLag(NamedTuple):
    """An Acc Eval classifier's accuracy in inference mode on `images` of the training reconstructions it
    learned from, with its moving BatchNorm statistics (`moving`) and with statistics from those images
    (`data`)."""

    images: int
    moving: float
    data: float


class AccEval(NamedTuple):
    """One method's Acc Eval: the test accuracy, the trained classifier, whether it trained stacked with
    the other methods' (`settings.stack_models`), whether it names one class for every test image
    (then its accuracy is the share of that class, whatever the reconstructions show), and `lag`: a
    `BatchNormLag` where its moving BatchNorm statistics cost it accuracy (`batchnorm_lag`), else None."""

    accuracy: float
    model: object
    stacked: bool = False
    one_class: bool = False
    lag: BatchNormLag = None


# Training images (class-stratified) on which an Acc Eval classifier's BatchNorm statistics are tried.
LAG_SAMPLE = 2048
# The accuracy those images must gain with statistics of their own for the moving ones to count as lagging.
LAG_MIN_GAIN = 0.02
# Moving statistics of a momentum at most LAG_FAST_MOMENTUM average the last few dozen batches; once their
# start weighs less than LAG_FORGOTTEN in them, they follow the weights, and the classifier is not tried.
LAG_FAST_MOMENTUM = 0.9
LAG_FORGOTTEN = 1e-3


def may_lag(layers, steps=None):
    """Whether the statistics of the BatchNorm `layers` may lag behind their weights after `steps` training
    steps (None: unknown): a momentum above `LAG_FAST_MOMENTUM`, or a start that still weighs
    `LAG_FORGOTTEN` or more."""
    return any(steps is None or layer.momentum > LAG_FAST_MOMENTUM or layer.momentum ** steps >= LAG_FORGOTTEN
               for layer in layers)


def batchnorm_lag(copy, split, pixel_range="0,1", reconstructor=None, steps=None):
    """How much the trained classifier `copy`'s moving BatchNorm statistics cost it: its accuracy in
    inference mode on a class-stratified sample of `LAG_SAMPLE` of the training `split` it learned from
    (made into reconstructions by `reconstructor`, if given), with those statistics and with statistics
    set from the sample itself (`batchnorm.statistics_from_data`; the moving ones are put back after).
    A `BatchNormLag` where the second is at least `LAG_MIN_GAIN` above the first, else None, also untried
    for a classifier without BatchNorm or one whose statistics cannot lag after its `steps` (`may_lag`):
    the paper's classifier (momentum 0.9) after more than 65 steps."""
    layers = batchnorm.batchnorm_layers(copy)
    if not may_lag(layers, steps) or len(split) == 0:
        return None
    sample = split.subset(stratified_indices(split.labels, LAG_SAMPLE))
    images = sample.arrays()[0] if reconstructor is None else predict(reconstructor,
                                                                      sample.dataset(512, labels=False))
    images = to_range(images, pixel_range)

    def sample_accuracy():
        return float(np.mean(predict(copy, images).argmax(axis=-1) == sample.labels))

    moving = sample_accuracy()
    kept = [(keras.ops.convert_to_numpy(layer.moving_mean), keras.ops.convert_to_numpy(layer.moving_variance))
            for layer in layers]
    try:
        batchnorm.statistics_from_data(copy, images)
        data = sample_accuracy()
    finally:
        for layer, (mean, variance) in zip(layers, kept):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
    return BatchNormLag(len(sample), moving, data) if data - moving >= LAG_MIN_GAIN else None


@runtime.setup_kept()
def acc_evals(classifier, train, test, settings, pixel_range="0,1", reconstructors=None, bn_statistics="moving"):
    """Acc Eval of several methods in one training pass: for each method, the test accuracy of a fresh
    classifier of `classifier`'s architecture trained on its reconstructions of the training images and
    tested on those of the test images. Returns {method: AccEval}.

    `train` and `test` map each method to a Split of its reconstructions (all with the same labels); with
    `reconstructors` ({method: frozen image -> image model}), the splits hold the images and each
    method's reconstructions are made batch by batch as training goes, so no split is held in memory.
    The classifiers train side by side in one model (`side_by_side`, stacked with `settings.stack_models`);
    each starts from the weights it would get alone and sees the same batches, so each is the classifier
    that training it alone gives (stacked, up to rounding; classifiers with regularization losses are
    never stacked, since a stacked model's call leaves them out).
    Under float16 they train one after another instead: one dynamic loss scale would skip every
    classifier's step when one of them overflows. They see their inputs in `pixel_range`.

    `bn_statistics` "data" sets each classifier's BatchNorm statistics, once training ends, to those of
    the training reconstructions it learned from (`batchnorm.statistics_from_split`; they must be held in
    memory); "moving" keeps what training leaves.
    """
    batchnorm.check_choice(bn_statistics, *train.values())
    if bn_statistics == "data" and reconstructors:
        raise UsageError("BatchNorm statistics from data need the reconstructions held in memory; these are "
                         "made batch by batch as training goes")
    if one_at_a_time(settings, len(train)):
        return {m: acc_evals(classifier, {m: train[m]}, {m: test[m]}, settings, pixel_range, reconstructors,
                             bn_statistics)[m] for m in train}
    reconstructors = reconstructors or {}
    methods = list(train)
    start(settings)
    copies = {m: seeded(settings.seed, lambda: fresh_copy(classifier)) for m in methods}
    stacked = settings.stack_models and len(methods) > 1 and not any(copy.losses for copy in copies.values())
    model, losses, stack = side_by_side(copies, pixel_range, reconstructors, stacked=stacked)
    start(settings)
    data = _side_by_side_feed(train, settings, methods)
    compile_classifier(model, settings, data, loss=losses)
    fit(model, data, settings)
    steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    if stack is not None:
        stack.write_back()
    if bn_statistics == "data":
        for m in methods:
            batchnorm.statistics_from_split(copies[m], train[m], pixel_range)
    results = {}
    for m in methods:
        predicted = predictions(classifier_on(copies[m], pixel_range, reconstructors.get(m)), test[m], 256)
        lag = None if bn_statistics == "data" else batchnorm_lag(copies[m], train[m], pixel_range,
                                                                 reconstructors.get(m), steps)
        results[m] = AccEval(float(np.mean(predicted == test[m].labels)) if len(predicted) else float("nan"),
                             copies[m], stacked, len(predicted) > 1 and len(np.unique(predicted)) == 1, lag)
    return results


def side_by_side(copies, pixel_range="0,1", reconstructors=None, stacked=False):
    """One model training the classifiers `copies` ({method: classifier}) together: an input per method
    (`image_<method>`), on which that method's reconstructor, if any, runs frozen in inference mode before
    its classifier, and an output `scores_<method>` with the loss that fits that classifier. The
    classifiers are separate branches, or, `stacked`, one `Stacked` layer (Keras' JAX backend).
    Returns (model, {output: loss}, the Stacked layer or None)."""
    reconstructors = reconstructors or {}
    inputs, images, outputs = [], [], {}
    for method, copy in copies.items():
        source = reconstructors.get(method)
        shape = (copy if source is None else source).inputs[0].shape[1:]
        inputs.append(keras.Input(shape=tuple(shape), name=f"image_{method}"))
        if not stacked:
            branch = renamed(classifier_on(copy, pixel_range, source), f"classifier_{method}")
            outputs[f"scores_{method}"] = named_output(branch(inputs[-1]), f"scores_{method}")
        else:
            images.append(inputs[-1] if source is None else frozen_outputs(source, inputs[-1]))
    stack = None
    if stacked:
        stack = Stacked([classifier_on(copy, pixel_range) for copy in copies.values()], name="classifiers")
        scores = stack(keras.ops.stack(images, axis=1))
        outputs = {f"scores_{m}": named_output(scores[:, k], f"scores_{m}") for k, m in enumerate(copies)}
    losses = {f"scores_{m}": classification_loss(copy) for m, copy in copies.items()}
    return keras.Model(inputs, outputs, name="acc_eval_classifiers"), losses, stack


def _side_by_side_feed(train, settings, methods):
    """Shuffled batches of ((one image batch per method), {scores_<method>: labels}): the same batch for
    every method when they share one split (which may stream from disk), else each method's own images
    (held in memory)."""
    def arrange(images, labels):
        return tuple(images), {f"scores_{m}": labels for m in methods}

    splits = [train[m] for m in methods]
    if all(s is splits[0] for s in splits):
        return splits[0].dataset(settings.batch_size, True, settings.seed,
                                 arrange=lambda x, y: arrange((x,) * len(methods), y))
    if not all(s.in_memory for s in splits):
        raise ValueError("methods trained on their own images need them held in memory")
    if not all(np.array_equal(s.labels, splits[0].labels) for s in splits):
        raise ValueError("methods trained side by side need the same labels in the same order")
    return ArrayFeed(tuple(s.images for s in splits), splits[0].labels, settings.batch_size, arrange,
                     shuffle=True, seed=settings.seed)


def acc_eval(classifier, train_images, train_labels, test_images, test_labels, settings, pixel_range="0,1"):
    """Acc Eval on reconstructions given as arrays (see `acc_evals`). Returns (accuracy, trained model)."""
    def split(images, labels):
        return Split(np.asarray(labels), tuple(images.shape[1:]), images=images)

    return acc_evals(classifier, {"given": split(train_images, train_labels)},
                     {"given": split(test_images, test_labels)}, settings, pixel_range)["given"][:2]
