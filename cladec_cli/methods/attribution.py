"""Attribution maps beside ClaDec: which pixels the classifier's decision for a class rests on.

Grad-CAM (Selvaraju et al. 2017) at the explained layer, gradient saliency averaged over noisy copies
(SmoothGrad, Smilkov et al. 2017) and occlusion (Zeiler & Fergus 2014), written on the backend's own
gradients (`gradients.input_gradients`), so they run under TensorFlow, JAX and PyTorch alike.
"""

import keras
import numpy as np

from cladec_cli.classifier import logits_model, outputs_probabilities
from cladec_cli.cladec import frozen_encoder
from cladec_cli.errors import UsageError
from cladec_cli.layers import build_offset, explainable_layers
from cladec_cli.methods.base import Method, normalized
from cladec_cli.methods.gradients import class_scores, input_gradients
from cladec_cli.pixels import in_range, to_range
from cladec_cli.training import predict


def spatial_layer(explainer):
    """The explained layer if its output is a map larger than 1 x 1, else the last such layer before it."""
    layers = explainable_layers(explainer.classifier, explainer.layer.convention)
    names = [layer.name for layer in layers]
    for layer in reversed(layers[:names.index(explainer.layer.name) + 1]):
        if len(layer.shape) == 3 and layer.shape[0] * layer.shape[1] > 1:
            return layer
    raise UsageError("Grad-CAM needs a convolutional layer with a spatial map at or before the explained layer")


class GradCAM(Method):
    """Grad-CAM: the layer's channels weighted by the mean gradient of the class's logit over each
    channel's map, summed, kept where positive, and resized to the image. The gradient is taken through
    the whole classifier (`build_offset`), so a layer inside a residual block has one too."""

    name, title, kind = "gradcam", "Grad-CAM", "map"

    def __init__(self, explainer):
        super().__init__(explainer)
        self.layer = spatial_layer(explainer)
        self.offset = build_offset(logits_model(explainer.classifier), self.layer)
        if self.layer.name != explainer.layer.name:
            self.title = f"Grad-CAM\n({self.layer.name})"

    def explain(self, images, classes):
        encoder = frozen_encoder(self.explainer.classifier, self.layer, self.explainer.pixel_range)
        activations = predict(encoder, images)
        scaled = keras.ops.convert_to_tensor(to_range(images, self.explainer.pixel_range))
        score = class_scores(self.offset, classes)
        gradients = input_gradients(lambda offset: score([scaled, offset]), np.zeros_like(activations))
        weights = gradients.mean(axis=(1, 2), keepdims=True)
        cam = np.maximum((weights * activations).sum(axis=-1), 0)
        height, width = np.asarray(images).shape[1:3]
        resized = keras.ops.image.resize(cam[..., None], (height, width), interpolation="bilinear")
        return normalized(np.maximum(keras.ops.convert_to_numpy(resized)[..., 0], 0))


class Saliency(Method):
    """|d logit / d pixel|, the largest over channels, averaged over `samples` copies of the image with
    Gaussian noise of standard deviation `noise` (SmoothGrad; 0 samples: the plain gradient)."""

    name, title, kind = "saliency", "SmoothGrad", "map"
    samples, noise, seed = 16, 0.15, 0

    def explain(self, images, classes):
        images = np.asarray(images, np.float32)
        score = class_scores(in_range(logits_model(self.explainer.classifier), self.explainer.pixel_range), classes)
        rng = np.random.default_rng(self.seed)
        copies = [images] if self.samples == 0 else [
            images + rng.normal(0, self.noise, images.shape).astype(np.float32) for _ in range(self.samples)]
        total = sum(np.abs(input_gradients(score, copy)) for copy in copies)
        return normalized((total / len(copies)).max(axis=-1))


class Occlusion(Method):
    """How much the class's probability drops when a `patch` x `patch` square (an eighth of the image's
    side by default, moved by half its side) is set to `fill`, per pixel averaged over the squares
    covering it; drops only. The fill is black, the absence of signal on Fashion-MNIST's dark background."""

    name, title, kind = "occlusion", "occlusion", "map"
    fill = 0.0

    def __init__(self, explainer, patch=None, stride=None):
        super().__init__(explainer)
        side = min(explainer.image_shape[:2])
        self.patch = patch or max(2, side // 8)
        self.stride = stride or max(1, self.patch // 2)

    def explain(self, images, classes):
        images = np.asarray(images, np.float32)
        model = self.explainer.scaled_classifier
        height, width = images.shape[1:3]
        corners = [(y, x) for y in _starts(height, self.patch, self.stride) for x in _starts(width, self.patch, self.stride)]
        maps = np.zeros(images.shape[:3], np.float32)
        for i, (image, label) in enumerate(zip(images, classes)):
            variants = np.repeat(image[None], len(corners), axis=0)
            for k, (y, x) in enumerate(corners):
                variants[k, y:y + self.patch, x:x + self.patch] = self.fill
            outputs = predict(model, np.concatenate([image[None], variants]))
            probabilities = probabilities_of(outputs, outputs_probabilities(self.explainer.classifier))[:, label]
            drops = np.maximum(probabilities[0] - probabilities[1:], 0)
            total, covered = np.zeros((height, width)), np.zeros((height, width))
            for drop, (y, x) in zip(drops, corners):
                total[y:y + self.patch, x:x + self.patch] += drop
                covered[y:y + self.patch, x:x + self.patch] += 1
            maps[i] = total / np.maximum(covered, 1)
        return normalized(maps)


def _starts(size, patch, stride):
    """Where squares start along one side: every `stride`, plus one flush with the far edge."""
    starts = list(range(0, size - patch + 1, stride))
    return starts if starts[-1] == size - patch else [*starts, size - patch]


def probabilities_of(outputs, are_probabilities):
    """Class probabilities from a classifier's outputs: as they are when they already are probabilities
    (`classifier.outputs_probabilities`), else the softmax of the logits."""
    outputs = np.asarray(outputs, np.float64)
    if are_probabilities:
        return outputs
    e = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
