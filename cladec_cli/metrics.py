"""The paper's measures of an explanation: Rec. Loss, Acc Eval and (cheap) agreement."""

import keras
import numpy as np

from cladec_cli.classifier import accuracy, classifier_on, fit_classifier, fresh_copy
from cladec_cli.data.split import Split
from cladec_cli.reconstruction import rec_loss  # noqa: F401  (part of this module's API)
from cladec_cli.reconstruction import sse_outputs
from cladec_cli.training import predict, start


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


def acc_eval_on(classifier, reconstructor, train_split, test_split, settings, pixel_range="0,1"):
    """Acc Eval of `reconstructor`: test accuracy of a fresh classifier of `classifier`'s architecture
    trained on the reconstructions of `train_split`'s images and tested on those of `test_split`.

    The reconstructions are made batch by batch as training goes (the reconstructor frozen, in
    inference mode), so no split is held in memory; `reconstructor` None uses the images themselves.
    The fresh classifier sees its inputs in `pixel_range`. Returns (accuracy, trained classifier).
    """
    start(settings)
    model = fresh_copy(classifier)
    fit_classifier(model, train_split, settings, pixel_range=pixel_range, inputs_from=reconstructor)
    return accuracy(classifier_on(model, pixel_range, reconstructor), test_split, 256), model


def acc_eval(classifier, train_images, train_labels, test_images, test_labels, settings, pixel_range="0,1"):
    """Acc Eval on reconstructions given as arrays (see `acc_eval_on`). Returns (accuracy, trained model)."""
    def split(images, labels):
        return Split(np.asarray(labels), tuple(images.shape[1:]), images=images)

    return acc_eval_on(classifier, None, split(train_images, train_labels), split(test_images, test_labels),
                       settings, pixel_range)
