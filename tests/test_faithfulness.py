"""Deletion and insertion curves against a classifier that looks at one pixel only."""

import keras
import numpy as np
import pytest

from cladec_cli.faithfulness import area, curves, pixel_ranks, scores

WEIGHT = 6.0


def one_pixel_classifier():
    """logits (WEIGHT * pixel (0, 0), 0) on 4 x 4 images: class 0's probability depends on that pixel alone."""
    inputs = keras.Input((4, 4, 1))
    dense = keras.layers.Dense(2, name="logits")
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    weights = np.zeros((16, 2), np.float32)
    weights[0, 0] = WEIGHT
    dense.set_weights([weights, np.zeros(2, np.float32)])
    return model


def test_ranks_put_the_most_relevant_pixel_first_and_break_ties_at_random():
    maps = np.zeros((2, 4, 4))
    maps[0, 2, 3] = 1.0
    maps[0, 0, 0] = 0.5
    ranks = pixel_ranks(maps, seed=0)
    assert ranks[0, 2, 3] == 0 and ranks[0, 0, 0] == 1
    for r in ranks:
        assert sorted(r.ravel()) == list(range(16))
    # An all-zero map is a random order, not the reading order.
    assert not np.array_equal(ranks[1].ravel(), np.arange(16))
    assert not np.array_equal(pixel_ranks(maps, seed=1)[1], ranks[1])


def test_a_map_on_the_one_pixel_gives_the_known_curves():
    model = one_pixel_classifier()
    images = np.ones((3, 4, 4, 1), np.float32)
    right = np.zeros((3, 4, 4))
    right[:, 0, 0] = 1.0
    wrong = np.ones((3, 4, 4))
    wrong[:, 0, 0] = 0.0  # the pixel the classifier uses comes last
    full = 1 / (1 + np.exp(-WEIGHT))  # class 0's probability with the pixel present
    measured = curves(model, images, [0, 0, 0], right, steps=16)
    # One pixel per step: deleting the top pixel first drops class 0 to 1/2 at once.
    np.testing.assert_allclose(measured["deletion"], [[full] + [0.5] * 16] * 3, rtol=1e-5)
    np.testing.assert_allclose(measured["insertion"], [[0.5] + [full] * 16] * 3, rtol=1e-5)
    assert area(measured["deletion"]) == pytest.approx((full + 0.5) / 32 + 0.5 * 15 / 16, rel=1e-5)
    late = curves(model, images, [0, 0, 0], wrong, steps=16)
    np.testing.assert_allclose(late["deletion"], [[full] * 16 + [0.5]] * 3, rtol=1e-5)
    assert area(late["deletion"]) > area(measured["deletion"])
    assert area(late["insertion"]) < area(measured["insertion"])


def test_scores_set_the_right_map_against_random_order():
    images = np.ones((8, 4, 4, 1), np.float32)
    right = np.zeros((8, 4, 4))
    right[:, 0, 0] = 1.0
    result = scores(one_pixel_classifier(), images, np.zeros(8, int), {"right": right})
    assert set(result["deletion"]) == {"right", "random"}
    assert result["deletion"]["right"] < result["deletion"]["random"]
    assert result["insertion"]["right"] > result["insertion"]["random"]


def test_curves_follow_the_class_asked_for_and_read_softmax_outputs_as_probabilities():
    logits = one_pixel_classifier()
    softmax = keras.Model(logits.inputs, keras.layers.Softmax()(logits.outputs[0]))
    images = np.ones((2, 4, 4, 1), np.float32)
    right = np.zeros((2, 4, 4))
    right[:, 0, 0] = 1.0
    full = 1 / (1 + np.exp(-WEIGHT))
    for model in (logits, softmax):
        measured = curves(model, images, [1, 0], right, steps=16)
        # Image 0 is explained for class 1, whose probability rises once the pixel is gone.
        np.testing.assert_allclose(measured["deletion"][0], [1 - full] + [0.5] * 16, rtol=1e-5)
        np.testing.assert_allclose(measured["deletion"][1], [full] + [0.5] * 16, rtol=1e-5)


def test_the_random_baseline_is_independent_of_the_tie_order():
    # An all-zero map is ordered by its ties alone. Were that order the baseline's reversed, each image's
    # deletion area for the map would equal its insertion area for the baseline, and so would the means.
    images = np.ones((8, 4, 4, 1), np.float32)
    for seed in (0, 3):
        result = scores(one_pixel_classifier(), images, np.zeros(8, int), {"flat": np.zeros((8, 4, 4))}, seed=seed)
        assert result["deletion"]["flat"] != pytest.approx(result["insertion"]["random"], rel=1e-9)
