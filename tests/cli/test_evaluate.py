"""`cladec evaluate` through the CLI: JSON, Markdown table, kept evaluation classifiers."""

import json

import keras
import numpy as np
import pytest

from cladec_cli import artifacts
from cladec_cli.data.datasets import load_dataset
from cladec_cli.evaluate_report import markdown_table
from cladec_cli.explainer import load_explainer
from cladec_cli.reconstruction import rec_loss
from conftest import invoke, quadrant_classifier, read_group, write_npz


def test_evaluate_writes_json_table_and_eval_models(tmp_path, trained):
    out = tmp_path / "metrics.json"
    keep = tmp_path / "eval_models"
    result = invoke("evaluate", "--classifier", trained["classifier"], "--decoder", trained["decoder"],
                    "--refae", trained["refae"], "--eval-epochs", 1, "--batch-size", 32,
                    "--keep-eval-models", keep, "--out", out, "--json")
    printed = json.loads(result.stdout)
    saved = json.loads(out.read_text())
    assert printed["rec_loss"] == saved["rec_loss"]
    for group in ("rec_loss", "acc_eval", "agreement"):
        assert set(saved[group]) == {"cladec", "refae", "difference"}
        assert saved[group]["difference"] == saved[group]["cladec"] - saved[group]["refae"]
    # The numbers are those of the saved models on the test images.
    explainer = load_explainer(trained["classifier"], trained["decoder"], trained["refae"])
    test_x, test_y = load_dataset(trained["dataset"]).test.arrays()
    recs = explainer.reconstructions(test_x)
    assert saved["rec_loss"]["cladec"] == pytest.approx(rec_loss(test_x, recs["cladec"]), rel=1e-5)
    assert saved["agreement"]["refae"] == np.mean(explainer.classify(recs["refae"]) == explainer.classify(test_x))
    for method in ("cladec", "refae"):
        eval_model = keras.models.load_model(keep / f"eval_{method}.h5")
        predicted = eval_model.predict(recs[method], verbose=0).argmax(axis=1)
        assert saved["acc_eval"][method] == pytest.approx(np.mean(predicted == test_y))
    assert saved["layer_index"] == -2 and saved["test_images"] == 80
    # Which files were measured, by path and weights digest.
    assert saved["models"] == {part: {"path": str(trained[part]), "digest": read_group(trained[part])["digest"]}
                               for part in ("classifier", "decoder", "refae")}
    table = out.with_suffix(".md").read_text()
    assert "| Rec. Loss (SSE per image) |" in table and "| Acc Eval |" in table
    assert (f"Baseline: the training images' mean image, as every test image's reconstruction, has Rec. Loss "
            f"{saved['mean_image_rec_loss']:.2f}.") in table
    for method in ("cladec", "refae"):
        path = keep / f"eval_{method}.h5"
        model = keras.models.load_model(path)
        assert model.output.shape[-1] == 4
        record = read_group(path)
        assert record["kind"] == "eval_classifier" and record["trained_on"] == f"{method} reconstructions"
        assert record["metrics"]["test_accuracy"] == saved["acc_eval"][method]


def test_evaluate_without_acc_eval_refuses_to_overwrite(tmp_path, trained):
    out = tmp_path / "metrics.json"
    args = ("evaluate", "--classifier", trained["classifier"], "--decoder", trained["decoder"],
            "--refae", trained["refae"], "--eval-epochs", 0, "--out", out, "-q")
    invoke(*args)
    assert "acc_eval" not in json.loads(out.read_text())
    first = out.read_text()
    result = invoke(*args, expect=2)
    assert "--overwrite" in result.stderr and out.read_text() == first


def test_evaluate_refuses_an_output_that_is_not_json_before_measuring(tmp_path, trained):
    # Its table goes beside it as .md: an .md output would be both files.
    result = invoke("evaluate", "--classifier", trained["classifier"], "--decoder", trained["decoder"],
                    "--eval-epochs", 0, "--out", tmp_path / "m.md", expect=2)
    assert result.stderr == f"cladec: error: {tmp_path / 'm.md'}: output must end in .json\n"
    assert list(tmp_path.iterdir()) == []


def test_identity_decoder_has_known_measures(tmp_path, npz_dataset):
    """ClaDec for a layer that passes the image on, with an identity decoder: Rec. Loss 0, agreement 1 and
    Acc Eval 1; a RefAE that outputs black images: Rec. Loss the images' energy, every one classed as 0."""
    classifier = quadrant_classifier(first=keras.layers.Identity(name="pixels"))
    paths = {name: tmp_path / f"{name}.h5" for name in ("classifier", "decoder", "refae")}
    classifier.save(paths["classifier"])
    belongs = {"layer_name": "pixels", "layer_index": -3, "classifier_digest": artifacts.weights_digest(classifier)}
    code = keras.Input((32, 32, 1))
    artifacts.save_model(keras.Model(code, keras.layers.Identity()(code)), paths["decoder"],
                         {"kind": "cladec_decoder", "alpha": 0.0, **belongs})
    artifacts.save_model(keras.Model(code, keras.layers.Rescaling(0.0)(code)), paths["refae"],
                         {"kind": "refae", **belongs})
    result = json.loads(invoke("evaluate", "--classifier", paths["classifier"], "--decoder", paths["decoder"],
                               "--refae", paths["refae"], "--dataset", npz_dataset, "--eval-epochs", 3,
                               "--batch-size", 16, "--lr", 0.1, "--out", tmp_path / "m.json", "--json").stdout)
    test_x = load_dataset(npz_dataset).test.images
    assert result["classifier_test_accuracy"] == 1.0
    assert result["rec_loss"]["cladec"] == 0.0 and result["agreement"]["cladec"] == 1.0
    assert result["acc_eval"]["cladec"] == 1.0
    assert result["rec_loss"]["refae"] == pytest.approx(np.mean(np.sum(np.square(test_x), axis=(1, 2, 3))))
    assert result["agreement"]["refae"] == 0.25 and result["acc_eval"]["refae"] == 0.25


def test_evaluate_takes_a_list_of_methods(tmp_path, trained):
    out = tmp_path / "metrics.json"
    invoke("evaluate", "--classifier", trained["classifier"], "--decoder", trained["decoder"], "--method", "cladec",
           "--method", "ridge", "--method", "gradcam", "--method", "occlusion", "--map-images", 12,
           "--eval-epochs", 1, "--batch-size", 32, "--out", out, "-q")
    saved = json.loads(out.read_text())
    assert saved["methods"] == ["cladec", "ridge", "gradcam", "occlusion"]
    for group in ("rec_loss", "train_rec_loss", "acc_eval", "agreement"):
        assert set(saved[group]) == {"cladec", "ridge"}  # no RefAE, so no ClaDec - RefAE difference
    assert set(saved["deletion"]) == set(saved["insertion"]) == {"gradcam", "occlusion", "random"}
    assert saved["map_images"] == 12
    assert all(0 <= v <= 1 for group in ("deletion", "insertion") for v in saved[group].values())
    table = out.with_suffix(".md").read_text()
    assert "| measure | ClaDec | Ridge |" in table and "| Deletion area (lower is better) |" in table
    # Layer -2 holds 256 values, more than the 240 training images: the ridge decoder can fit them exactly.
    assert (saved["code_values"], saved["train_images"]) == (256, 240)
    said = ("The ridge decoder maps 256 code values linearly to each pixel, fitted on 240 training images: with "
            "at least as many values as images it can reproduce them almost exactly")
    assert said in table
    assert "ridge decoder maps" not in markdown_table({**saved, "train_images": 257})


def test_attribution_maps_alone_without_acc_eval(tmp_path, trained):
    out = tmp_path / "metrics.json"
    invoke("evaluate", "--classifier", trained["classifier"], "--decoder", trained["decoder"], "--method", "gradcam",
           "--map-images", 8, "--eval-epochs", 0, "--out", out, "-q")
    saved = json.loads(out.read_text())
    assert saved["methods"] == ["gradcam"] and set(saved["deletion"]) == {"gradcam", "random"}
    assert "rec_loss" not in saved and "acc_eval" not in saved


def test_a_decoder_trained_on_other_images_than_the_classifier_is_measured_on_its_own(tmp_path, trained):
    other = f"npz:{write_npz(tmp_path / 'other.npz', 96, 48, seed=7)}"
    decoder = tmp_path / "d.h5"
    recorded = json.loads(invoke("train-decoder", "--classifier", trained["classifier"], "--layer", -2,
                                 "--dataset", other, "--epochs", 1, "--batch-size", 32, "--out", decoder,
                                 "--json").stdout)
    result = json.loads(invoke("evaluate", "--classifier", trained["classifier"], "--decoder", decoder,
                               "--eval-epochs", 0, "--out", tmp_path / "m.json", "--json").stdout)
    assert (result["dataset"], result["test_images"]) == (other, 48)
    assert result["rec_loss"]["cladec"] == pytest.approx(recorded["metrics"]["test_rec_loss"], rel=1e-4)


def test_evaluate_refuses_refae_without_its_file(tmp_path, trained):
    out = tmp_path / "metrics.json"
    result = invoke("evaluate", "--classifier", trained["classifier"], "--decoder", trained["decoder"],
                    "--method", "refae", "--out", out, expect=2)
    assert "--refae" in result.stderr and not out.exists()


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="stacking is refused on the other backends")
def test_evaluate_refuses_stacked_models_off_jax_in_one_line(tmp_path, trained):
    out = tmp_path / "metrics.json"
    result = invoke("evaluate", "--classifier", trained["classifier"], "--decoder", trained["decoder"],
                    "--stack-models", "--out", out, expect=2)
    assert result.stderr.strip().splitlines() == [
        f"cladec: error: --stack-models needs Keras' JAX backend (KERAS_BACKEND=jax); this is "
        f"{keras.backend.backend()}"]
    assert not out.exists()


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="stacking runs on Keras' JAX backend")
def test_evaluate_stacks_the_acc_eval_classifiers_and_says_so(tmp_path, trained):
    out, keep = tmp_path / "metrics.json", tmp_path / "eval_models"
    invoke("evaluate", "--classifier", trained["classifier"], "--decoder", trained["decoder"], "--refae",
           trained["refae"], "--eval-epochs", 1, "--batch-size", 32, "--stack-models", "--keep-eval-models", keep,
           "--out", out, "-q")
    saved = json.loads(out.read_text())
    assert saved["eval_settings"]["stacked_methods"] == ["cladec", "refae"]
    assert artifacts.inspect(keep / "eval_cladec.h5")["stacked"] is True


def test_an_acc_eval_classifier_that_names_one_class_is_warned_about(tmp_path, npz_dataset):
    # Its logits start with class 0 far ahead, and a fresh copy trained briefly keeps it there: its Acc Eval
    # is class 0's share of the test images, whatever the reconstructions show.
    inputs = keras.Input((32, 32, 1))
    means = keras.layers.Flatten()(keras.layers.AveragePooling2D(16)(inputs))
    biased = keras.layers.Dense(4, name="logits", bias_initializer=keras.initializers.Constant([1e4, 0, 0, 0]))
    path = tmp_path / "biased.keras"
    keras.Model(inputs, biased(means)).save(path)
    decoder = tmp_path / "d.h5"
    invoke("train-decoder", "--classifier", path, "--dataset", npz_dataset, "--layer", -1, "--epochs", 0, "-q",
           "--out", decoder)
    out = tmp_path / "m.json"
    said = invoke("evaluate", "--classifier", path, "--decoder", decoder, "--eval-epochs", 1, "--lr", 1e-6,
                  "--out", out).stderr
    assert ("warning: the Acc Eval classifier of cladec names one class for every test image, so its Acc Eval is "
            "that class's share, whatever the reconstructions show") in said
    saved = json.loads(out.read_text())
    assert saved["acc_eval_one_class"] == ["cladec"] and saved["acc_eval"]["cladec"] == 0.25
    assert "its classifier names one class for every test image" in out.with_suffix(".md").read_text()


def test_acc_eval_classifiers_can_take_batchnorm_statistics_from_their_reconstructions(tmp_path, trained):
    out, keep = tmp_path / "metrics.json", tmp_path / "kept"
    invoke("evaluate", "--classifier", trained["classifier"], "--decoder", trained["decoder"], "--eval-epochs", 1,
           "--batch-size", 32, "--eval-bn-statistics", "data", "--keep-eval-models", keep, "--out", out, "-q")
    saved = json.loads(out.read_text())
    assert saved["eval_settings"]["bn_statistics"] == "data"
    assert read_group(keep / "eval_cladec.h5")["bn_statistics"] == "data"
    assert ("The Acc Eval classifiers' BatchNorm statistics are those of the reconstructions each learned from."
            in out.with_suffix(".md").read_text())
    # Its first BatchNorm normalises with the mean of what reaches it over the training reconstructions.
    explainer = load_explainer(trained["classifier"], trained["decoder"])
    recs = explainer.reconstructions(load_dataset(trained["dataset"]).train.arrays()[0])["cladec"]
    eval_model = keras.models.load_model(keep / "eval_cladec.h5")
    first = next(layer for layer in eval_model.layers if isinstance(layer, keras.layers.BatchNormalization))
    reaching = keras.Model(eval_model.inputs[0], first.input).predict(recs, verbose=0)
    np.testing.assert_allclose(first.moving_mean, reaching.mean(axis=(0, 1, 2)), rtol=1e-3, atol=1e-5)


def test_acc_eval_classifiers_whose_batchnorm_lags_are_warned_about(tmp_path, npz_dataset):
    # BatchNorm after inputs shifted far below 0: after a short training its moving mean is far from its
    # batches', and in inference mode every ReLU after it is off.
    inputs = keras.Input((32, 32, 1))
    h = keras.layers.Conv2D(8, 3, strides=4)(keras.layers.Rescaling(1.0, offset=-20.0)(inputs))
    h = keras.layers.ReLU()(keras.layers.BatchNormalization()(h))
    path = tmp_path / "bn.keras"
    keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(h))).save(path)
    decoder, out = tmp_path / "d.h5", tmp_path / "m.json"
    invoke("train-decoder", "--classifier", path, "--dataset", npz_dataset, "--layer", -2, "--epochs", 3, "-q",
           "--batch-size", 16, "--out", decoder)
    args = ("evaluate", "--classifier", path, "--decoder", decoder, "--eval-epochs", 2, "--lr", 0.01,
            "--batch-size", 16, "--out", out, "--overwrite")
    said = invoke(*args).stderr
    saved = json.loads(out.read_text())
    lag = saved["acc_eval_bn_lag"]["cladec"]
    assert lag["moving"] + 0.02 <= lag["data"] and lag["images"] == saved["train_images"]
    assert (f"warning: the Acc Eval classifier of cladec gets {lag['moving']:.4f} of {lag['images']:,} of the "
            f"reconstructions it learned from right in inference mode with its moving BatchNorm statistics, and "
            f"{lag['data']:.4f} with statistics from those reconstructions") in said
    assert said.count("or use statistics from the reconstructions with --eval-bn-statistics data") == 1
    assert f"with statistics from those reconstructions, so the figure understates" in out.with_suffix(".md").read_text()
    said = invoke(*args, "--eval-bn-statistics", "data").stderr
    assert "acc_eval_bn_lag" not in json.loads(out.read_text()) and "inference mode" not in said


def test_warnings_name_eval_bn_statistics_only_where_the_caller_offers_it():
    from cladec_cli.errors import cli_text
    from cladec_cli.evaluate import lag_warning, one_class_warning
    from cladec_cli.metrics import BatchNormLag
    from conftest import small_conv_classifier

    classifier, lag = small_conv_classifier(), BatchNormLag(2048, 0.25, 0.8)
    assert cli_text(one_class_warning(["refae"], classifier)).endswith(
        "train it for more epochs, or set them from the reconstructions it learned from with --eval-bn-statistics data")
    assert one_class_warning(["refae"], classifier, offer_statistics=False).endswith("train it for more epochs")
    assert "moving statistics lag" not in one_class_warning(["refae"], classifier, "data")
    assert "moving statistics lag" not in one_class_warning(["refae"], quadrant_classifier())
    assert cli_text(lag_warning("refae", lag)).startswith(
        "the Acc Eval classifier of refae gets 0.2500 of 2,048 of the reconstructions it learned from right")
    assert cli_text(lag_warning("refae", lag)).endswith("or use statistics from the reconstructions with "
                                                        "--eval-bn-statistics data")
    assert lag_warning("refae", lag, offer_statistics=False).endswith("train it for more epochs")
