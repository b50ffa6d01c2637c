"""A model file runs no code unless the user says so: Lambda layers need --trust-model, which is recorded."""

import json

import keras
import pytest
from keras import layers

from cladec_cli import artifacts
from cladec_cli.errors import ArtifactError
from conftest import invoke

TRAIN = ("--epochs", 1, "--batch-size", 16, "-q")
OPT_IN = "pass --trust-model if you trust where the file comes from"


def lambda_classifier():
    """A 32x32 gray classifier whose nested backbone holds a Lambda layer (code stored in the file)."""
    backbone_in = keras.Input((32, 32, 1))
    h = layers.Lambda(lambda x: x * 2.0 - 1.0, name="rescale")(backbone_in)
    h = layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="conv")(h)
    backbone = keras.Model(backbone_in, h, name="backbone")
    inputs = keras.Input((32, 32, 1))
    return keras.Model(inputs, layers.Dense(4, name="logits")(layers.Flatten()(backbone(inputs))))


def refused(*args):
    result = invoke(*args, expect=2)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    return result.stderr


def saved_lambda_classifier(root, suffix, dataset):
    path = root / f"classifier{suffix}"
    lambda_classifier().save(path)
    return {"classifier": path, "root": root, "dataset": dataset}


@pytest.fixture(scope="module", params=[".h5", ".keras"])
def untrusted(request, tmp_path_factory, npz_dataset):
    return saved_lambda_classifier(tmp_path_factory.mktemp("lambda"), request.param, npz_dataset)


def test_lambda_layers_are_found_in_nested_models(untrusted):
    assert artifacts.code_layers(artifacts.model_config(untrusted["classifier"])) == ["rescale"]


def test_lambda_layers_are_refused_without_the_opt_in(untrusted, tmp_path):
    classifier, data = untrusted["classifier"], untrusted["dataset"]
    for command in (("layers",),
                    ("train-decoder", "--dataset", data, "--out", tmp_path / "d.h5", *TRAIN),
                    ("train-refae", "--dataset", data, "--out", tmp_path / "r.h5", *TRAIN)):
        line = refused(*command, "--classifier", classifier)
        assert line == f"cladec: error: {classifier} holds a Lambda layer (rescale), which runs code stored in the " \
                       f"file; {OPT_IN}\n"
    assert not list(tmp_path.iterdir())  # nothing written


def test_the_opt_in_loads_the_model_and_is_recorded(tmp_path, npz_dataset):
    untrusted = saved_lambda_classifier(tmp_path, ".h5", npz_dataset)
    classifier, data = untrusted["classifier"], untrusted["dataset"]
    rows = json.loads(invoke("layers", "--classifier", classifier, "--trust-model", "--json").stdout)
    assert rows[0]["name"] == "backbone/rescale"
    decoder, refae = tmp_path / "d.h5", tmp_path / "r.h5"
    common = ("--classifier", classifier, "--trust-model", "--layer", "backbone/conv", "--dataset", data, *TRAIN)
    invoke("train-decoder", *common, "--out", decoder)
    invoke("train-refae", *common, "--out", refae)
    for path in (decoder, refae):
        assert artifacts.read_provenance(path)["trust_model"] is True
    # The RefAE is a copy of the classifier's graph, Lambda layer included: it needs the opt-in too.
    assert artifacts.code_layers(artifacts.model_config(refae)) == ["rescale"]
    models = ("--classifier", classifier, "--decoder", decoder, "--refae", refae, "--dataset", data)
    line = refused("explain", *models, "--out", tmp_path / "g.png")
    assert "--trust-model" in line and not (tmp_path / "g.png").exists()
    invoke("explain", *models, "--trust-model", "--count", 2, "--out", tmp_path / "g.png", "-q")
    assert "--trust-model" in refused("evaluate", *models, "--eval-epochs", 0, "--out", tmp_path / "m.json")
    result = json.loads(invoke("evaluate", *models, "--trust-model", "--eval-epochs", 1, "--batch-size", 16,
                               "--keep-eval-models", tmp_path / "eval", "--out", tmp_path / "m.json", "--json").stdout)
    assert result["eval_settings"]["trust_model"] is True
    assert artifacts.read_provenance(tmp_path / "eval" / "eval_cladec.h5")["trust_model"] is True


def test_models_without_code_need_no_opt_in(trained):
    for kind in ("classifier", "decoder", "refae"):
        assert artifacts.code_layers(artifacts.model_config(trained[kind])) == []
        assert artifacts.read_provenance(trained[kind])["trust_model"] is False


def test_keras_safe_mode_stays_on(untrusted, monkeypatch):
    seen = []
    real = keras.models.load_model

    def spy(*args, **kwargs):
        seen.append(kwargs.get("safe_mode", True))
        return real(*args, **kwargs)

    monkeypatch.setattr(keras.models, "load_model", spy)
    model, _ = artifacts.load_model(untrusted["classifier"], trust=True)
    assert seen == [False] and isinstance(model.get_layer("backbone").get_layer("rescale"), layers.Lambda)
    # Code that the Lambda check missed still meets Keras' safe mode (for .h5 files only since Keras 3.12).
    monkeypatch.setattr(artifacts, "code_layers", lambda config: [])
    if untrusted["classifier"].suffix == ".keras":
        with pytest.raises(ArtifactError, match="`trust`"):
            artifacts.load_model(untrusted["classifier"])
        assert seen[-1] is True
