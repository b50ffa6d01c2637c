"""How faithful attribution maps are to the classifier: deletion and insertion curves (Petsiuk et al.
2018, "RISE"). Deletion blacks out the pixels a map ranks highest, a growing share at a time, and
follows the probability of the explained class: the faster it falls (the lower the area under the
curve), the better the map finds what the decision rests on. Insertion starts from a black image and
restores pixels in the map's order: the higher its area, the better. A random order is the baseline.
"""

import numpy as np

from cladec_cli.classifier import outputs_probabilities
from cladec_cli.methods.attribution import probabilities_of
from cladec_cli.training import predict

STEPS = 16


def pixel_ranks(maps, seed=0):
    """Each pixel's place in its map's order, highest relevance first (0): N x H x W. Ties (the zeros of
    a map kept where positive) are ordered at random, with `seed`, so that they favour no corner."""
    maps = np.asarray(maps, np.float64)
    rng = np.random.default_rng(seed)
    flat = maps.reshape(len(maps), -1)
    ranks = np.empty(flat.shape, np.int64)
    for i, values in enumerate(flat):
        order = np.lexsort((rng.random(values.size), -values))
        ranks[i, order] = np.arange(values.size)
    return ranks.reshape(maps.shape)


def curves(classifier, images, classes, maps, steps=STEPS, fill=0.0, seed=0, batch_size=512):
    """{'deletion': N x (steps + 1), 'insertion': N x (steps + 1)}: the probability `classifier`
    ([0, 1] images in, logits or probabilities out) gives each image's class in `classes` after
    0, 1/steps, ..., all of its pixels, in the order of its map, were set to `fill` (deletion) or
    restored from an image of `fill` (insertion)."""
    images = np.asarray(images, np.float32)
    ranks = pixel_ranks(maps, seed)
    pixels = ranks[0].size
    are_probabilities = outputs_probabilities(classifier)
    rows, classes = np.arange(len(images)), np.asarray(classes)

    def probability(variant):
        outputs = predict(classifier, variant.astype(np.float32), batch_size)
        return probabilities_of(outputs, are_probabilities)[rows, classes]

    # Both curves run between the whole image and the image of `fill`: each is predicted once.
    whole, blank = probability(images), probability(np.full_like(images, fill))
    result = {"deletion": [whole], "insertion": [blank]}
    for k in range(1, steps):
        hidden = (ranks < round(k * pixels / steps))[..., None]
        result["deletion"].append(probability(np.where(hidden, fill, images)))
        result["insertion"].append(probability(np.where(hidden, images, fill)))
    result["deletion"].append(blank)
    result["insertion"].append(whole)
    return {name: np.stack(values, axis=1) for name, values in result.items()}


def area(curve):
    """Mean over images of the area under each curve, the share of pixels running from 0 to 1."""
    curve = np.asarray(curve, np.float64)
    steps = curve.shape[1] - 1
    return float(np.mean((curve[:, :-1] + curve[:, 1:]).sum(axis=1) / (2 * steps)))


def scores(classifier, images, classes, maps_by_method, steps=STEPS, seed=0):
    """{'deletion': {method: area}, 'insertion': {method: area}} for each method's maps, and for a
    random order ('random') as the baseline every method should beat."""
    images = np.asarray(images, np.float32)
    # The baseline's order and the tie-breaking draw from independent streams: with one seed, the
    # random order would be the reverse of the one a method's ties get.
    baseline, ties = np.random.SeedSequence(seed).spawn(2)
    maps_by_method = {**maps_by_method, "random": np.random.default_rng(baseline).random(images.shape[:3])}
    result = {"deletion": {}, "insertion": {}}
    for method, maps in maps_by_method.items():
        measured = curves(classifier, images, classes, maps, steps, seed=ties)
        for name in result:
            result[name][method] = area(measured[name])
    return result
