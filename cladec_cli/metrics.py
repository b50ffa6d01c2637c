"""The paper's measures of an explanation: Rec. Loss, Acc Eval and (cheap) agreement."""

import numpy as np

from cladec_cli.classifier import accuracy, fit_classifier, fresh_copy
from cladec_cli.data.split import Split
from cladec_cli.reconstruction import rec_loss  # noqa: F401  (part of this module's API)
from cladec_cli.training import start


def agreement(predict_classes, images, reconstructions, original_classes=None):
    """Share of images whose reconstruction gets the same predicted class as the original.

    `original_classes`, when the caller already has them, saves predicting the originals again.
    """
    if len(images) == 0:
        return float("nan")
    if original_classes is None:
        original_classes = predict_classes(images)
    return float(np.mean(original_classes == predict_classes(reconstructions)))


def acc_eval(classifier, train_images, train_labels, test_images, test_labels, settings):
    """Test accuracy of a fresh classifier of `classifier`'s architecture trained on the given images.

    Returns (accuracy, trained model).
    """
    start(settings)
    model = fresh_copy(classifier)
    shape = tuple(train_images.shape[1:])
    fit_classifier(model, Split(np.asarray(train_labels), shape, images=train_images), settings)
    return accuracy(model, Split(np.asarray(test_labels), shape, images=test_images)), model
