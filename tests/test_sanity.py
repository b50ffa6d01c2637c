"""Sanity checks: the cascade's stages and randomisation, SSIM, and the whole check on a tiny model."""

import json

import keras
import numpy as np

from cladec_cli.classifier import load_classifier
from cladec_cli.sanity import randomized, ssim, stages
from conftest import invoke, read_group


def test_stages_run_from_the_top_and_keep_batchnorm_with_its_layer(trained):
    classifier, _ = load_classifier(trained["classifier"])
    groups = stages(classifier)
    weighted = [layer.name for layer in classifier.layers if layer.weights]
    assert [name for group in reversed(groups) for name in group] == weighted
    assert len(groups[0]) == 1 and groups[0][0] == weighted[-1]  # the logits first
    assert any(isinstance(classifier.get_layer(g[1]), keras.layers.BatchNormalization) for g in groups if len(g) > 1)


def test_randomisation_touches_only_the_chosen_layers(trained):
    classifier, _ = load_classifier(trained["classifier"])
    groups = stages(classifier)
    copy = randomized(classifier, groups[:2])
    changed = {layer.name for original, layer in zip(classifier.layers, copy.layers)
               if any(not np.array_equal(a, b) for a, b in zip(original.get_weights(), layer.get_weights()))}
    assert changed and changed <= set(groups[0] + groups[1])
    assert set(groups[0]) <= changed


def test_ssim_of_an_explanation_with_itself_is_one():
    rng = np.random.default_rng(0)
    picture, other = rng.random((32, 32, 1)), rng.random((32, 32, 1))
    assert ssim(picture, picture) == 1.0 and ssim(picture, other) < 0.2
    assert ssim(picture[..., 0], 0.5 * picture[..., 0]) < 1.0


def test_sanity_on_a_tiny_classifier(trained, tmp_path, monkeypatch):
    from cladec_cli import sanity

    records, train = [], sanity.train_decoder
    monkeypatch.setattr(sanity, "train_decoder", lambda model, record, *args, **kwargs: (
        records.append(record), train(model, record, *args, **kwargs))[1])
    out = tmp_path / "sanity"
    result = invoke("sanity", "--classifier", trained["classifier"], "--decoder", trained["decoder"], "--count", 4,
                    "--decoder-epochs", 1, "--depth", 2, "--batch-size", 32, "--noise", 0.02, "--out-dir", out,
                    "--json")
    summary = json.loads(result.stdout)
    classifier, _ = load_classifier(trained["classifier"])
    assert summary["stages"] == ["none", *(group[0] for group in stages(classifier)[:2])]
    assert len(summary["cascade"]["cladec"]) == 3
    cascade = summary["cascade"]
    assert set(cascade) == {"cladec", "gradcam", "saliency", "occlusion"}
    assert all(values[0] == 1.0 for values in cascade.values())  # stage 0 against itself
    # Randomising the logits leaves the code at layer -2, so the retrained decoder, unchanged;
    # every attribution of the prediction changes.
    assert cascade["cladec"][1] == 1.0
    assert all(cascade[m][1] < 1.0 for m in ("gradcam", "saliency", "occlusion"))
    assert 0 < summary["kept"] <= 4 and set(summary["noise"]) == set(cascade)
    # The randomised classifiers are at chance on purpose: their decoders train under a record that says so,
    # which keeps the chance warning for the classifier itself.
    assert [record.get("epochs") for record in records] == [read_group(trained["classifier"])["epochs"], 0, 0]
    for name in ("sanity.json", "sanity.md", "sanity.png"):
        assert (out / name).exists()
    again = invoke("sanity", "--classifier", trained["classifier"], "--decoder", trained["decoder"],
                   "--out-dir", out, expect=2)
    assert "exists" in again.output


def test_the_layers_of_nested_models_are_stages_of_their_own():
    """A base model behind a head, or a classifier of (H, W) images that cladec puts behind a Reshape."""
    base_input = keras.Input((8, 8, 1))
    h = keras.layers.BatchNormalization(name="bn")(keras.layers.Conv2D(2, 3, name="conv")(base_input))
    base = keras.Model(base_input, keras.layers.Conv2D(2, 3, name="conv2")(h), name="base")
    inputs = keras.Input((8, 8, 1))
    classifier = keras.Model(inputs, keras.layers.Dense(3, name="scores")(keras.layers.Flatten()(base(inputs))))
    groups = stages(classifier)
    assert groups == [["scores"], ["base/conv2"], ["base/conv", "base/bn"]]
    copy = randomized(classifier, groups[1:2])
    pairs = [(original, layer) for original, layer in zip(base.layers, copy.get_layer("base").layers) if layer.weights]
    changed = [layer.name for original, layer in pairs
               if any(not np.array_equal(a, b) for a, b in zip(original.get_weights(), layer.get_weights()))]
    assert changed == ["conv2"]
    np.testing.assert_array_equal(copy.get_layer("scores").get_weights()[0], classifier.get_layer("scores").get_weights()[0])
