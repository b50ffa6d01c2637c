"""Reconstructions and their losses, shared by training, explanation and evaluation."""

import keras
import numpy as np

from cladec_cli import distribute
from cladec_cli.training import predict


def per_image_sse(images, reconstructions, batch_size=1024):
    """Sum of squared errors of each image over all pixels and channels (in float64, `batch_size` images
    at a time, so a whole split needs no float64 copy of itself)."""
    def sse(start):
        diff = (np.asarray(images[start:start + batch_size], np.float64)
                - np.asarray(reconstructions[start:start + batch_size], np.float64))
        return np.square(diff).reshape(len(diff), -1).sum(axis=1)

    return np.concatenate([sse(start) for start in range(0, len(images), batch_size)] or [np.zeros(0)])


def rec_loss(images, reconstructions):
    """Mean per-image SSE: the paper's "Rec. Loss"."""
    return float(per_image_sse(images, reconstructions).mean()) if len(images) else float("nan")


def mean_image_rec_loss(train, test, batch_size=1024):
    """The Rec. Loss on the `test` split of the `train` split's mean image, taken as the reconstruction
    of every image: what a decoder gets that learned the data's average and nothing of the image. Both
    splits are read batch by batch."""
    if len(train) == 0 or len(test) == 0:
        return float("nan")
    total = sum(np.asarray(images, np.float64).sum(axis=0) for images in train.batches(batch_size))
    mean = (total / len(train)).astype(np.float32)
    losses = [per_image_sse(images, np.broadcast_to(mean, images.shape)) for images in test.batches(batch_size)]
    return float(np.concatenate(losses).mean())


def split_rec_losses(reconstructors, split, batch_size=256, measuring=None):
    """{method: Rec. Loss over `split`} of image -> image `reconstructors`, in one prediction pass over
    the split, batch by batch, so a split that streams from disk is never held whole. `measuring`, a
    `rec_loss_model` of the same reconstructors, spares a caller that measures every epoch a new model
    (and a new compiled prediction) each time."""
    if len(split) == 0 or not reconstructors:
        return {m: float("nan") for m in reconstructors}
    if distribute.active():
        # Inside a distributed training, batch by batch as plain calls: Keras' batch prediction would
        # hand this process's whole batch to every replica and join their copies.
        def sse(model, images):
            return per_image_sse(images, keras.ops.convert_to_numpy(model(images, training=False)))

        return {m: float(np.concatenate([sse(model, images) for images in split.batches(batch_size)]).mean())
                for m, model in reconstructors.items()}
    measuring = measuring or rec_loss_model(reconstructors, split.image_shape)
    outputs = predict(measuring, split.dataset(batch_size, labels=False))
    return {m: float(np.mean(outputs[f"sse_{m}"], dtype=np.float64)) for m in reconstructors}


def rec_loss_model(reconstructors, image_shape):
    """image -> per method, the per-image SSE of its reconstruction (`sse_<method>`)."""
    images = keras.Input(shape=tuple(image_shape), name="image")
    return keras.Model(images, sse_outputs(images, reconstructors), name="rec_losses")


def sse_outputs(images, reconstructors, then=None):
    """For a symbolic image batch, per method the per-image SSE of its reconstruction (`sse_<method>`)
    and, given a model `then`, that model's output on the reconstruction (`scores_<method>`)."""
    outputs = {}
    pixels = tuple(range(1, len(images.shape)))
    for method, model in reconstructors.items():
        recs = model(images, training=False)
        outputs[f"sse_{method}"] = keras.ops.sum(keras.ops.square(images - recs), axis=pixels)
        if then is not None:
            outputs[f"scores_{method}"] = then(recs, training=False)
    return outputs
