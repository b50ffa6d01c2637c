"""Class prototypes (the decoded mean code of each class) and contrastive paths (a code moved step by
step towards the nearest code of another class, each step decoded and classified)."""

from dataclasses import dataclass

import numpy as np

from cladec_cli.classifier import outputs_probabilities
from cladec_cli.methods.attribution import probabilities_of
from cladec_cli.training import predict


def class_prototypes(encoder, decoder, images_of, classes):
    """For each class in `classes`, the decoding of the mean code of its images, `images_of(c)` (one
    class's codes in memory at a time): N x H x W x C."""
    means = np.stack([predict(encoder, images_of(c)).mean(axis=0) for c in classes])
    return predict(decoder, means)


def nearest(code, candidates):
    """The index of the candidate code closest to `code` (Euclidean distance over all its values)."""
    flat = np.asarray(candidates, np.float64).reshape(len(candidates), -1)
    return int(np.argmin(((flat - np.asarray(code, np.float64).reshape(1, -1)) ** 2).sum(axis=1)))


@dataclass
class ContrastPath:
    """The steps from an image's code to a target code: the mix of each step (0: the image, 1: the
    target), its decoded picture, and the class the classifier's rest gives the code, with probability."""

    mix: np.ndarray
    pictures: np.ndarray
    classes: np.ndarray
    probabilities: np.ndarray
    target_index: int


def contrast_path(encoder, decoder, head, image, candidates, steps=8):
    """Move `image`'s code in `steps` equal steps to the nearest of the `candidates` images' codes;
    decode each step and classify it with `head` (the classifier after the layer)."""
    code = predict(encoder, np.asarray(image)[None])[0]
    candidate_codes = predict(encoder, candidates)
    target = nearest(code, candidate_codes)
    mix = np.linspace(0.0, 1.0, steps)
    shape = (-1,) + (1,) * code.ndim
    codes = ((1 - mix).reshape(shape) * code[None] + mix.reshape(shape) * candidate_codes[target][None])
    probabilities = probabilities_of(predict(head, codes.astype(np.float32)), outputs_probabilities(head))
    return ContrastPath(mix, predict(decoder, codes.astype(np.float32)), probabilities.argmax(axis=1),
                        probabilities.max(axis=1), target)
