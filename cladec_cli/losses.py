"""Reconstruction losses in the paper's unit: per image, summed over pixels and channels."""

import keras
from keras import ops

from cladec_cli.errors import UsageError, option

REC_LOSSES = ("sse", "bce")


def sum_squared_error(y_true, y_pred):
    """Per-image sum of squared errors over all pixels and channels (the tables' "Rec. Loss")."""
    diff = ops.square(ops.cast(y_true, "float32") - ops.cast(y_pred, "float32"))
    return ops.sum(ops.reshape(diff, (ops.shape(diff)[0], -1)), axis=1)


def sum_binary_crossentropy(y_true, y_pred):
    """Per-image binary cross-entropy summed over pixels, used for MNIST as in the paper."""
    y_true = ops.reshape(ops.cast(y_true, "float32"), (ops.shape(y_pred)[0], -1))
    y_pred = ops.reshape(ops.cast(y_pred, "float32"), (ops.shape(y_pred)[0], -1))
    return ops.sum(keras.losses.binary_crossentropy(y_true[..., None], y_pred[..., None]), axis=1)


def reconstruction_loss(name):
    """The training loss function for `--rec-loss`."""
    if name not in REC_LOSSES:
        raise UsageError(f"unknown {option('rec_loss_name')} {name!r}; choose one of {', '.join(REC_LOSSES)}")
    return {"sse": sum_squared_error, "bce": sum_binary_crossentropy}[name]
