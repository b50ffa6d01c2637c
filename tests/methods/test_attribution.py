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


def test_grad_cam_inside_a_residual_block_follows_the_gradient_through_the_block():
    """The map is added to the image it came from (a connection around it): the logits' gradient with
    respect to the map is still +-1/64, so Grad-CAM gives what it gives without the connection."""
    inputs = keras.Input((8, 8, 1))
    feature_map = keras.layers.Activation("linear", name="map")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Add(name="add")([feature_map, inputs]))
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(pooled))
    model.get_layer("logits").set_weights([np.array([[1.0, -1.0]], np.float32), np.zeros(2, np.float32)])
    images = np.random.default_rng(2).random((3, 8, 8, 1)).astype(np.float32)
    method = GradCAM(explainer_for(model, "map"))
    np.testing.assert_allclose(method.explain(images, [0, 0, 0]),
                               images[..., 0] / images.max(axis=(1, 2, 3))[:, None, None], rtol=1e-5)
    # A classifier that takes [-1, 1] sees 2x - 1, which is positive where x > 1/2.
    method = GradCAM(Explainer(model, {}, None, {"layer_name": "map", "pixel_range": "-1,1"}))
    seen = np.maximum(2 * images[..., 0] - 1, 0)
    np.testing.assert_allclose(method.explain(images, [0, 0, 0]), seen / seen.max(axis=(1, 2))[:, None, None],
                               rtol=1e-5, atol=1e-6)


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
    np.testing.assert_allclose(probabilities_of(logits, False)[1], [0.5, 0.5])
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7]])
    np.testing.assert_allclose(probabilities_of(probabilities, True), probabilities)


def test_grad_cam_weighs_channels_by_their_mean_gradient():
    """A 4 x 4 map of two channels (block means, and minus half of them) under a Dense head whose
    weights vary by position: Grad-CAM's channel weights are the head's weights averaged over positions."""
    inputs = keras.Input((8, 8, 1))
    conv = keras.layers.Conv2D(2, 2, strides=2, use_bias=False, name="map")
    feature_map = conv(inputs)
    dense = keras.layers.Dense(3, use_bias=False, name="logits")
    model = keras.Model(inputs, dense(keras.layers.Flatten()(feature_map)))
    conv.set_weights([np.stack([np.full((2, 2, 1), 0.25), np.full((2, 2, 1), -0.125)], axis=-1).astype(np.float32)])
    weights = np.random.default_rng(4).normal(size=(32, 3)).astype(np.float32)
    dense.set_weights([weights])
    images = np.random.default_rng(5).random((2, 8, 8, 1)).astype(np.float32)
    maps = GradCAM(explainer_for(model, "map")).explain(images, [1, 2])

    blocks = images[..., 0].reshape(2, 4, 2, 4, 2).mean(axis=(2, 4))
    activations = np.stack([blocks, -0.5 * blocks], axis=-1)  # 2 x 4 x 4 x 2
    for i, c in enumerate([1, 2]):
        alpha = weights[:, c].reshape(4, 4, 2).mean(axis=(0, 1))
        cam = np.maximum(activations[i] @ alpha, 0)
        resized = keras.ops.convert_to_numpy(keras.ops.image.resize(cam[None, ..., None], (8, 8)))[0, ..., 0]
        expected = np.maximum(resized, 0) / max(resized.max(), 1e-12)
        np.testing.assert_allclose(maps[i], expected, rtol=1e-4, atol=1e-5)


def softmax_model():
    inputs = keras.Input((8, 8, 1))
    dense = keras.layers.Dense(2, activation="softmax", name="probabilities")
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    kernel = np.zeros((64, 2), np.float32)
    kernel[:32, 0], kernel[32:, 1] = 40.0, -40.0  # top half for class 0: saturates the softmax at 1
    dense.set_weights([kernel, np.zeros(2, np.float32)])
    return model


def test_attributions_of_a_saturated_softmax_are_not_zero():
    images = np.ones((1, 8, 8, 1), np.float32)
    explainer = explainer_for(softmax_model(), "probabilities")
    assert float(explainer.classifier.predict(images, verbose=0)[0, 0]) == 1.0
    method = Saliency(explainer)
    method.samples = 0
    saliency = method.explain(images, [0])[0]
    assert saliency[:4].min() > 0.9 and saliency.max() == 1.0
    occlusion = Occlusion(explainer, patch=2, stride=2).explain(np.zeros((1, 8, 8, 1), np.float32) + 0.01, [1])
    assert occlusion.shape == (1, 8, 8)


def test_occlusion_scores_every_pixel_whatever_the_size():
    inputs = keras.Input((10, 10, 1))
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(keras.layers.Flatten()(inputs)))
    maps = Occlusion(explainer_for(model, "logits"), patch=4, stride=4).explain(np.ones((1, 10, 10, 1)), [0])
    covered = Occlusion(explainer_for(model, "logits"), patch=4, stride=4)
    assert covered.patch == 4 and maps.shape == (1, 10, 10)
    # The squares start at 0, 4 and, flush with the edge, 6: the last two columns are scored too.
    from cladec_cli.methods.attribution import _starts

    assert _starts(10, 4, 4) == [0, 4, 6] and _starts(8, 4, 4) == [0, 4]


def test_every_method_has_one_interface():
    assert set(METHODS) == {"cladec", "refae", "ridge", "gradcam", "saliency", "occlusion"}
    explainer = explainer_for(pooled_model(), "map")
    methods = [METHODS[name](explainer) for name in ("refae", "gradcam", "saliency", "occlusion")]
    images = np.random.default_rng(3).random((2, 8, 8, 1)).astype(np.float32)
    out = explain_all(methods, images, [0, 1])
    assert set(out) == {"gradcam", "saliency", "occlusion"}  # no RefAE was given
    assert all(v.shape == (2, 8, 8) and v.min() >= 0 and v.max() <= 1 for v in out.values())
