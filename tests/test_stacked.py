"""Models stacked in one layer (JAX) compute and train as the same models apart."""

import keras
import numpy as np
import pytest

from cladec_cli.errors import UsageError
from cladec_cli.metrics import acc_evals
from cladec_cli.training import TrainSettings
from conftest import flipped, held_split, small_conv_classifier, synthetic_images

jax_only = pytest.mark.skipif(keras.backend.backend() != "jax", reason="stacking runs on Keras' JAX backend")


@pytest.fixture(scope="module")
def images():
    x, y = synthetic_images(320, seed=5)
    return x.astype(np.float32) / 255.0, y


def conv_classifier(seed):
    """`small_conv_classifier` initialised from `seed`."""
    keras.utils.set_random_seed(seed)
    return small_conv_classifier()


def relative(a, b):
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="the refusal is for the other backends")
def test_stacking_is_refused_off_jax_in_one_line():
    with pytest.raises(UsageError, match="JAX backend"):
        TrainSettings(stack_models=True)


@jax_only
def test_a_stack_computes_each_model_on_its_slice_and_writes_its_weights_back(images):
    from cladec_cli.stacked import Stacked

    x, _ = images
    models = [conv_classifier(seed) for seed in (0, 1, 2)]
    stack = Stacked(models)
    batch = np.stack([x[:16], flipped(x[:16]), x[16:32]], axis=1)
    out = np.asarray(stack(batch))
    assert out.shape == (16, 3, 4)
    for k, model in enumerate(models):
        np.testing.assert_allclose(out[:, k], model.predict(batch[:, k], verbose=0), rtol=1e-5, atol=1e-6)
    # Another model's weights in slot 0 reach model 0 only when written back.
    pairs = [*zip(stack.stacked_trainable, models[2].trainable_variables),
             *zip(stack.stacked_non_trainable, models[2].non_trainable_variables)]
    for stacked, theirs in pairs:
        stacked.assign(np.concatenate([np.asarray(theirs.value)[None], np.asarray(stacked.value)[1:]]))
    assert relative(models[0].predict(x[:16], verbose=0), models[2].predict(x[:16], verbose=0)) > 1e-3
    stack.write_back()
    for a, b in zip(models[0].get_weights(), models[2].get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="one architecture"):
        Stacked([models[0], keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Flatten(),
                                              keras.layers.Dense(4)])])


@jax_only
@pytest.mark.parametrize("streamed", [False, True])
def test_stacked_acc_eval_classifiers_train_as_the_side_by_side_ones(images, streamed, monkeypatch):
    from cladec_cli import stacked as stacking

    x, y = images
    sources = {"flipped": flipped(x), "same": x, "dark": x * 0.5}
    stacks = []

    class Counted(stacking.Stacked):
        def __init__(self, models, **kwargs):
            super().__init__(models, **kwargs)
            stacks.append(self.count)

    monkeypatch.setattr("cladec_cli.metrics.Stacked", Counted)

    def evaluated(stack_models, seed=0):
        chosen = TrainSettings(epochs=2, batch_size=32, lr=0.01, verbose=0, seed=seed, stack_models=stack_models)
        if not streamed:
            return acc_evals(conv_classifier(0), {m: held_split(a, y, slice(0, 240)) for m, a in sources.items()},
                             {m: held_split(a, y, slice(240, 320)) for m, a in sources.items()}, chosen)
        # The same images reconstructed batch by batch, each method by its own frozen model.
        reconstructors = {m: keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Lambda(
            lambda t, m=m: {"flipped": keras.ops.flip(t, axis=1), "same": t, "dark": t * 0.5}[m])])
            for m in sources}
        train, test = held_split(x, y, slice(0, 240)), held_split(x, y, slice(240, 320))
        return acc_evals(conv_classifier(0), dict.fromkeys(sources, train), dict.fromkeys(sources, test), chosen,
                         reconstructors=reconstructors)

    stacked, apart, reseeded = evaluated(True), evaluated(False), evaluated(False, seed=1)
    assert stacks == [3]  # one layer for the three classifiers, and none without the setting
    assert all(r.stacked for r in stacked.values()) and not any(r.stacked for r in apart.values())
    for method, images_of_method in sources.items():
        # BatchNorm's statistics are trained state too: they come back from the stack. (Its moving mean
        # follows the conv bias in front of it, which differs by rounding as above; the variance does not.)
        variances = [[v for v in r.model.non_trainable_variables if "moving_variance" in v.path]
                     for r in (stacked[method], apart[method])]
        assert variances[0] and all(relative(v.value, w.value) < 0.01 for v, w in zip(*variances))
        assert all(relative(v.value, np.ones(v.shape)) > 0.05 for v in variances[0])  # moved from the start
        probe = images_of_method[240:]
        mine = stacked[method].model.predict(probe, verbose=0)
        theirs = apart[method].model.predict(probe, verbose=0)
        # Rounding apart (a conv bias in front of BatchNorm has a gradient of zero up to rounding, which
        # Adam scales up), the same classifier: far closer than one trained from another seed.
        assert relative(mine, theirs) < 0.02
        assert relative(reseeded[method].model.predict(probe, verbose=0), theirs) > 5 * relative(mine, theirs)
        assert abs(stacked[method].accuracy - apart[method].accuracy) <= 2 / 80


@jax_only
def test_classifiers_with_regularization_losses_are_not_stacked(images):
    x, y = images
    inputs = keras.Input((32, 32, 1))
    regularized = keras.Model(inputs, keras.layers.Dense(4, kernel_regularizer="l2")(keras.layers.Flatten()(inputs)))
    train = held_split(x, y, slice(0, 64))
    settings = TrainSettings(epochs=1, batch_size=32, verbose=0, stack_models=True)
    result = acc_evals(regularized, {"a": train, "b": train}, {"a": train, "b": train}, settings)
    assert not any(r.stacked for r in result.values())
