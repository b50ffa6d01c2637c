"""Gradients of a per-image score with respect to a batch of inputs, under whichever Keras backend runs."""

import keras
import numpy as np

from cladec_cli.errors import UsageError


def input_gradients(score, inputs):
    """d score(x)_i / d x_i for each image i of the batch `inputs` (NumPy, float32); `score` maps a
    batch to one value per image. Images are independent (inference mode), so the gradient of the summed
    score is each image's own gradient."""
    x = np.asarray(inputs, np.float32)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            total = tf.reduce_sum(score(tensor))
        gradient = tape.gradient(total, tensor)
        if gradient is None:
            raise UsageError("no gradient reaches the images through the classifier (a step in it without one, "
                             "such as a cast to integers): this explanation needs it; choose another method")
        return gradient.numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: score(v).sum())(jax.numpy.asarray(x)))
    if backend == "torch":
        import torch

        tensor = torch.tensor(x, requires_grad=True, device=keras.src.backend.torch.core.get_device())
        score(tensor).sum().backward()
        return tensor.grad.detach().cpu().numpy()
    raise NotImplementedError(f"gradients under the {backend} backend")


def class_scores(model, classes):
    """A score function: each image's output of its class in `classes` (give it a model that ends in
    logits: a confident softmax saturates at 1 in float32, where its gradient vanishes)."""
    picked = keras.ops.one_hot(np.asarray(classes), int(model.outputs[0].shape[-1]))

    def score(x):
        return keras.ops.sum(keras.ops.cast(model(x, training=False), "float32") * picked, axis=-1)
    return score
