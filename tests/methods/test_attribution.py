"""Attribution methods against models whose answers are known in closed form."""

import keras
import numpy as np
import pytest

from cladec_cli.explainer import Explainer
from cladec_cli.methods import METHODS, GradCAM, Occlusion, Saliency, explain_all
from cladec_cli.methods.attribution import probabilities_of


def explainer_for(model, layer_name):
    """An Explainer of `model` at `layer_name` with no decoder: enough for attribution methods."""
    return Explainer(model, {}, None, {"layer_name": layer_name})


def linear_model(weights):
    inputs = keras.Input((8, 8, 1))
    logits = keras.layers.Dense(weights.shape[1], use_bias=False, name="logits")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, logits)
    model.get_layer("logits").set_weights([weights])
    return model


@pytest.mark.parametrize("samples", [0, 8])
def test_saliency_of_a_linear_model_is_its_weights(samples):
    weights = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    method = Saliency(explainer_for(linear_model(weights), "logits"))
    method.samples = samples  # noise leaves a linear model's gradient unchanged
    images = np.random.default_rng(1).random((2, 8, 8, 1)).astype(np.float32)
    maps = method.explain(images, [2, 0])
    for m, c in zip(maps, [2, 0]):
        expected = np.abs(weights[:, c]).reshape(8, 8)
        np.testing.assert_allclose(m, expected / expected.max(), rtol=1e-5, atol=1e-6)


def pooled_model():
    """logit 0 = mean of the map, logit 1 = - mean: the gradient is +-1/64 at every position."""
    inputs = keras.Input((8, 8, 1))
    feature_map = keras.layers.Activation("linear", name="map")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(feature_map)
    logits = keras.layers.Dense(2, name="logits")(pooled)
    model = keras.Model(inputs, logits)
    model.get_layer("logits").set_weights([np.array([[1.0, -1.0]], np.float32), np.zeros(2, np.float32)])
    return model


def test_grad_cam_of_a_pooled_map_is_the_map_where_the_class_gains():
    images = np.random.default_rng(2).random((3, 8, 8, 1)).astype(np.float32)
    method = GradCAM(explainer_for(pooled_model(), "map"))
    toward = method.explain(images, [0, 0, 0])
    np.testing.assert_allclose(toward, images[..., 0] / images.max(axis=(1, 2, 3))[:, None, None], rtol=1e-5)
    assert not method.explain(images, [1, 1, 1]).any()  # every positive pixel argues against class 1


def test_grad_cam_of_a_vector_layer_uses_the_last_map_before_it():
    method = GradCAM(explainer_for(pooled_model(), "logits"))
    assert method.layer.name == "map" and "(map)" in method.title


def top_left_model():
    """Only the top-left quadrant's mean brightness matters: logit 0 = 5 x that mean, logit 1 = - that."""
    inputs = keras.Input((8, 8, 1))
    quadrants = keras.layers.Flatten()(keras.layers.AveragePooling2D(4)(inputs))
    logits = keras.layers.Dense(2, name="logits")(quadrants)
    model = keras.Model(inputs, logits)
    kernel = np.zeros((4, 2), np.float32)
    kernel[0] = [5.0, -5.0]
    model.get_layer("logits").set_weights([kernel, np.zeros(2, np.float32)])
    return model


def test_occlusion_of_pixels_the_model_ignores_changes_nothing():
    images = np.ones((2, 8, 8, 1), np.float32)
    maps = Occlusion(explainer_for(top_left_model(), "logits"), patch=2, stride=1).explain(images, [0, 0])
    assert maps.shape == (2, 8, 8)
    # Every square covering these pixels lies outside the top-left quadrant.
    assert not maps[:, 5:, :].any() and not maps[:, :, 5:].any()
    assert (maps[:, :3, :3] > 0).all() and maps.max() == 1.0


def test_probabilities_from_logits_or_from_a_softmax():
    logits = np.array([[2.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(probabilities_of(logits)[1], [0.5, 0.5])
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7]])
    np.testing.assert_allclose(probabilities_of(probabilities), probabilities)


def test_every_method_has_one_interface():
    assert set(METHODS) == {"cladec", "refae", "gradcam", "saliency", "occlusion"}
    explainer = explainer_for(pooled_model(), "map")
    methods = [METHODS[name](explainer) for name in ("refae", "gradcam", "saliency", "occlusion")]
    images = np.random.default_rng(3).random((2, 8, 8, 1)).astype(np.float32)
    out = explain_all(methods, images, [0, 1])
    assert set(out) == {"gradcam", "saliency", "occlusion"}  # no RefAE was given
    assert all(v.shape == (2, 8, 8) and v.min() >= 0 and v.max() <= 1 for v in out.values())
