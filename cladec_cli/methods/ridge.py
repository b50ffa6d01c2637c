"""A linear decoder of the explained layer's code, fitted in closed form: a reference for how much of
the picture the code holds for any decoder, against which ClaDec's trained decoder is read."""

from functools import cached_property

import keras
import numpy as np

from cladec_cli.cladec import frozen_encoder
from cladec_cli.errors import UsageError
from cladec_cli.methods.base import Method
from cladec_cli.training import predict

# The largest code fitted: its d x d normal equations take 512 MiB in float64.
MAX_CODE = 8192


def fit_ridge(codes_and_targets, penalty=1e-3):
    """Ridge regression from batches of (codes N x d, targets N x p), accumulated in float64 so that a
    split streaming from disk is never held whole: (weights d x p, bias p). The penalty is relative,
    `penalty` times the mean variance of the codes, so that it means the same at every layer."""
    count, sums, cross, outer, target_sums = 0, None, None, None, None
    for codes, targets in codes_and_targets:
        codes, targets = np.asarray(codes, np.float64), np.asarray(targets, np.float64)
        if sums is None:
            sums, target_sums = np.zeros(codes.shape[1]), np.zeros(targets.shape[1])
            outer, cross = np.zeros((codes.shape[1],) * 2), np.zeros((codes.shape[1], targets.shape[1]))
        count += len(codes)
        sums += codes.sum(axis=0)
        target_sums += targets.sum(axis=0)
        outer += codes.T @ codes
        cross += codes.T @ targets
    if not count:
        raise UsageError("a ridge decoder needs training images; the training split is empty")
    mean, target_mean = sums / count, target_sums / count
    outer = outer - count * np.outer(mean, mean)  # centred: the bias takes the means
    cross = cross - count * np.outer(mean, target_mean)
    scale = penalty * max(np.trace(outer) / len(outer), 1e-12)
    weights = np.linalg.solve(outer + scale * np.eye(len(outer)), cross)
    return weights, target_mean - mean @ weights


class Ridge(Method):
    """The explained layer's code decoded by a linear map (ridge regression on the training images'
    codes), clipped to [0, 1]."""

    name, title, kind, needs = "ridge", "Ridge", "image", ("training images",)
    fitted_on_training = True
    penalty = 1e-3

    def __init__(self, explainer, train=None, batch_size=256):
        super().__init__(explainer)
        self.train, self.batch_size = train, batch_size
        size = int(np.prod(explainer.layer.shape))
        if size > MAX_CODE:  # refused before any other method's work
            raise UsageError(f"layer {explainer.layer.name} has {size:,} values per image; the ridge decoder "
                             f"fits codes of at most {MAX_CODE:,} (a deeper layer)")

    def available(self):
        return self.train is not None

    @cached_property
    def reconstructor(self):
        """[0, 1] images -> their linear decoding: the encoder, one Dense layer, a reshape and a clip."""
        if self.train is None:
            raise UsageError("the ridge decoder is fitted on training images; none were given")
        explainer = self.explainer
        encoder = frozen_encoder(explainer.classifier, explainer.layer, explainer.pixel_range)
        flat = keras.Sequential([encoder, keras.layers.Flatten()])
        batches = ((predict(flat, images, self.batch_size), images.reshape(len(images), -1))
                   for images in self.train.batches(self.batch_size))
        weights, bias = fit_ridge(batches, self.penalty)
        images = keras.Input(shape=explainer.image_shape)
        linear = keras.layers.Dense(weights.shape[1], name="ridge")
        decoded = linear(keras.layers.Flatten()(encoder(images)))
        linear.set_weights([weights.astype(np.float32), bias.astype(np.float32)])
        pictures = keras.layers.Reshape(explainer.image_shape)(keras.ops.clip(decoded, 0.0, 1.0))
        return keras.Model(images, pictures, name="ridge")
