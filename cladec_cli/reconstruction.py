"""Reconstructions and their losses, shared by training, explanation and evaluation."""

import numpy as np

from cladec_cli import distribute


def per_image_sse(images, reconstructions):
    """Sum of squared errors of each image over all pixels and channels."""
    diff = np.asarray(images, np.float64) - np.asarray(reconstructions, np.float64)
    return np.square(diff).reshape(len(diff), -1).sum(axis=1)


def rec_loss(images, reconstructions):
    """Mean per-image SSE: the paper's "Rec. Loss"."""
    return float(per_image_sse(images, reconstructions).mean()) if len(images) else float("nan")


def split_rec_loss(model, split, batch_size=64):
    """Rec. Loss of an image -> image model over a split, batch by batch: a split that streams from
    disk is never held in memory as a whole. Batches are small because `per_image_sse` works on
    float64 copies (four per batch)."""
    sse = [per_image_sse(images, predict_batch(model, images)) for images in split.batches(batch_size)]
    return float(np.concatenate(sse).mean()) if sse else float("nan")


def predict_batch(model, images):
    """The model's outputs for one batch of images, as a NumPy array. Inside a distributed training,
    the model runs as one plain call on this process's whole batch: Keras' batch prediction would
    hand that batch to every replica and join their copies."""
    if distribute.active():
        return np.asarray(model(images, training=False))
    return np.asarray(model.predict_on_batch(images))
