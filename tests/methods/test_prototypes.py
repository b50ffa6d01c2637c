"""Class prototypes and contrastive paths, against linear encoders and decoders with known answers."""

import keras
import numpy as np

from cladec_cli.methods.prototypes import class_prototypes, contrast_path, nearest


def linear(n_in, n_out, weights, name):
    inputs = keras.Input((n_in,))
    layer = keras.layers.Dense(n_out, use_bias=False, name=f"{name}_dense")
    model = keras.Model(inputs, layer(inputs), name=name)
    layer.set_weights([weights.astype(np.float32)])
    return model


def test_a_prototype_decodes_the_mean_code_of_its_class():
    rng = np.random.default_rng(0)
    w_enc, w_dec = rng.normal(size=(6, 3)), rng.normal(size=(3, 6))
    encoder, decoder = linear(6, 3, w_enc, "encoder"), linear(3, 6, w_dec, "decoder")
    images, labels = rng.random((10, 6)).astype(np.float32), np.array([0, 1, 2] * 3 + [1])
    prototypes = class_prototypes(encoder, decoder, lambda c: images[labels == c], [2, 0])
    for row, c in zip(prototypes, [2, 0]):
        np.testing.assert_allclose(row, (images[labels == c] @ w_enc).mean(axis=0) @ w_dec, rtol=1e-4, atol=1e-5)
    # With a linear decoder, decoding the mean code is the mean of the decoded codes.
    np.testing.assert_allclose(prototypes[1], (images[labels == 0] @ w_enc @ w_dec).mean(axis=0), rtol=1e-4, atol=1e-5)


def test_nearest_code():
    candidates = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    assert nearest([2.9, 3.5], candidates) == 1
    assert nearest([0.4, 0.4], candidates) == 0


def test_a_contrast_path_goes_in_equal_steps_to_the_nearest_code_of_the_class():
    identity = linear(2, 2, np.eye(2), "identity")
    head = linear(2, 2, np.array([[1.0, -1.0], [0.0, 0.0]]), "head")  # class 0 iff the first value > 0
    image = np.array([1.0, 5.0], np.float32)
    candidates = np.array([[-4.0, 0.0], [-1.0, 4.0], [-9.0, 9.0]], np.float32)
    path = contrast_path(identity, identity, head, image, candidates, steps=5)
    assert path.target_index == 1
    np.testing.assert_allclose(path.mix, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(path.pictures, [[1, 5], [0.5, 4.75], [0, 4.5], [-0.5, 4.25], [-1, 4]], atol=1e-6)
    assert path.classes.tolist() == [0, 0, 0, 1, 1]  # a tie at the middle goes to the first class
    np.testing.assert_allclose(path.probabilities[0], 1 / (1 + np.exp(-2.0)), rtol=1e-5)
