"""The ridge decoder: exact on linear data, the same fitted in batches, and as a method of a real layer."""

import numpy as np
import pytest

from cladec_cli.errors import UsageError
from cladec_cli.explainer import load_explainer
from cladec_cli.methods import Ridge, build
from cladec_cli.methods.ridge import fit_ridge
from cladec_cli.reconstruction import rec_loss


def test_fit_recovers_a_linear_map_and_is_the_same_in_batches():
    rng = np.random.default_rng(0)
    codes = np.maximum(rng.normal(size=(300, 6)), 0) + 2.0  # ReLU-like codes far from a zero mean
    weights, bias = rng.normal(size=(6, 5)), rng.normal(size=5)
    targets = codes @ weights + bias
    fitted, offset = fit_ridge([(codes, targets)], penalty=1e-10)
    np.testing.assert_allclose(fitted, weights, atol=1e-6)
    np.testing.assert_allclose(offset, bias, atol=1e-6)
    batched = fit_ridge([(codes[i:i + 64], targets[i:i + 64]) for i in range(0, 300, 64)], penalty=1e-10)
    np.testing.assert_allclose(batched[0], fitted, atol=1e-8)
    # The penalty shrinks the weights towards zero.
    shrunk, _ = fit_ridge([(codes, targets)], penalty=10.0)
    assert np.linalg.norm(shrunk) < 0.5 * np.linalg.norm(weights)


def test_fit_refuses_no_data():
    with pytest.raises(UsageError, match="training split is empty"):
        fit_ridge([])


def test_ridge_decodes_unseen_images_better_than_the_mean_image(trained, setup):
    _, _, dataset = setup
    explainer = load_explainer(trained["classifier"], trained["decoder"])
    with pytest.raises(UsageError, match="needs training images"):
        build(["ridge"], explainer)
    (method,) = build(["ridge"], explainer, dataset.train)
    assert isinstance(method, Ridge)
    train_x, _ = dataset.train.arrays()
    test_x, _ = dataset.test.arrays()  # images the fit never saw
    decoded = method.explain(test_x)
    assert decoded.shape == test_x.shape and decoded.min() >= 0 and decoded.max() <= 1
    mean_image = np.broadcast_to(train_x.mean(axis=0), test_x.shape)
    assert rec_loss(test_x, decoded) < 0.8 * rec_loss(test_x, mean_image)


def test_ridge_refuses_a_code_too_large_to_fit(trained, setup, monkeypatch):
    from cladec_cli.methods import ridge

    _, _, dataset = setup
    explainer = load_explainer(trained["classifier"], trained["decoder"])
    monkeypatch.setattr(ridge, "MAX_CODE", 8)
    with pytest.raises(UsageError, match="values per image"):
        Ridge(explainer, dataset.train)  # when the method is chosen, before any method's work
