"""Everyday CLI comforts: --version, info, --json, --quiet, environment defaults, TensorBoard logs."""

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from cladec_cli import __version__
from cladec_cli.cli import common
from cladec_cli.cli.main import cli
from conftest import invoke, quadrant_classifier, read_group, write_npz


def test_version():
    result = invoke("--version")
    assert __version__ in result.output


def test_info_prints_provenance(trained):
    human = invoke("info", trained["refae"]).stdout
    assert "kind" in human and "refae" in human and "classifier_digest" in human
    record = json.loads(invoke("info", trained["refae"], "--json").stdout)
    assert record == read_group(trained["refae"])


def test_info_says_what_a_file_without_provenance_is(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.save(tmp_path / "plain.h5")
    model.save_weights(tmp_path / "only.weights.h5")
    assert json.loads(invoke("info", tmp_path / "plain.h5", "--json").stdout) == {
        "kind": "Keras model without cladec provenance"}
    assert json.loads(invoke("info", tmp_path / "only.weights.h5", "--json").stdout) == {
        "kind": "HDF5 file without a model (weights alone, or other data)"}


def test_environment_defaults_json_and_quiet(tmp_path, npz_dataset):
    out = tmp_path / "classifier.h5"
    runner = CliRunner()
    result = runner.invoke(cli, ["train-classifier", "--dataset", npz_dataset, "--out", str(out), "--json"],
                           env={"CLADEC_TRAIN_CLASSIFIER_EPOCHS": "0", "CLADEC_BATCH_SIZE": "16"})
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["epochs"] == 0 and summary["batch_size"] == 16 and summary["path"] == str(out)
    quiet = invoke("train-classifier", "--dataset", npz_dataset, "--epochs", 1, "--out", tmp_path / "q.h5", "-q")
    assert quiet.stdout == "" and quiet.stderr == ""


def test_a_bad_value_from_the_environment_names_the_variable(tmp_path):
    for env, option, variable in (({"CLADEC_TRAIN_DECODER_EPOCHS": "abc"}, "--epochs", "CLADEC_TRAIN_DECODER_EPOCHS"),
                                  ({"CLADEC_BATCH_SIZE": "abc"}, "--batch-size", "CLADEC_BATCH_SIZE"),
                                  ({"CLADEC_BATCH_SIZE": "", "CLADEC_TRAIN_DECODER_BATCH_SIZE": "abc"}, "--batch-size",
                                   "CLADEC_TRAIN_DECODER_BATCH_SIZE")):
        result = CliRunner().invoke(cli, ["train-decoder", "--classifier", str(tmp_path / "c.h5"), "--layer", "-1"],
                                    env=env)
        assert result.exit_code == 2
        assert result.stderr.strip() == (f"cladec: error: Invalid value for '{option}': 'abc' is not a valid integer "
                                         f"(from the environment variable {variable}) (see `cli train-decoder --help`)")
    typed = CliRunner().invoke(cli, ["train-decoder", "--classifier", str(tmp_path / "c.h5"), "--layer", "-1",
                                     "--epochs", "abc"])
    assert "environment" not in typed.stderr and "Invalid value for '--epochs'" in typed.stderr


@pytest.mark.tensorflow_only
def test_tensorboard_logs(tmp_path, npz_dataset):
    logs = tmp_path / "tb"
    invoke("train-classifier", "--dataset", npz_dataset, "--epochs", 1, "--tensorboard", logs, "-q",
           "--out", tmp_path / "c.h5")
    assert any(path.name.startswith("events.out.tfevents") for path in logs.rglob("*"))


def test_quiet_hides_the_device_line_but_not_a_training_warning(capsys):
    device, warning = "device: CPU, 2 cores (pretend)", "warning: XLA is off for m: XLA cannot compile its X layers"
    for line in (device, warning, warning):
        common.announce_once(line, quiet=True)
    assert capsys.readouterr().err.splitlines() == [warning]


def test_a_classifier_at_chance_on_the_data_is_warned_about(tmp_path, npz_dataset):
    # The quadrant classifier knows every synthetic image's class; rolled, it names the next class each time,
    # as a classifier given its classes in another order would.
    right, rolled = quadrant_classifier(), quadrant_classifier()
    rolled.get_layer("logits").set_weights([np.roll(np.eye(4, dtype=np.float32) * 10, 1, axis=1), np.zeros(4)])
    for model, warned in ((right, False), (rolled, True)):
        path = tmp_path / f"classifier_{warned}.keras"
        model.save(path)
        decoder = tmp_path / f"d_{warned}.h5"
        trained = invoke("train-decoder", "--classifier", path, "--dataset", npz_dataset, "--layer", -1,
                         "--epochs", 0, "-q", "--out", decoder)
        measured = invoke("evaluate", "--classifier", path, "--decoder", decoder, "--eval-epochs", 0, "-q",
                          "--out", tmp_path / f"m_{warned}.json")
        for result in (trained, measured):
            assert ("warning: the classifier gets 0% of 80 sampled test images right, about chance for 4 classes"
                    in result.stderr) == warned, result.stderr
            assert "BatchNorm" not in result.stderr  # it has none
        # Nor does the rolled classifier see any training image of a class as that class.
        contrasted = invoke("contrast", "--classifier", path, "--decoder", decoder, "--index", 0, "--to-class",
                            "top-right", "--steps", 2, "-q", "--out", tmp_path / f"c_{warned}.png")
        assert ("warning: the classifier sees none of the training images of class top-right as that class"
                in contrasted.stderr) == warned, contrasted.stderr


def test_brief_batchnorm_is_named_among_the_causes_of_lagging_results(tmp_path, npz_dataset):
    import keras

    # A BatchNorm in front of the quadrants: fresh, its moving statistics pass the images on unchanged.
    bn = quadrant_classifier(first=keras.layers.BatchNormalization(momentum=0.999, name="bn"))
    bn.get_layer("logits").set_weights([np.roll(np.eye(4, dtype=np.float32) * 10, 1, axis=1), np.zeros(4)])
    bn.save(tmp_path / "bn.keras")
    result = invoke("train-decoder", "--classifier", tmp_path / "bn.keras", "--dataset", npz_dataset, "--layer", -1,
                    "--epochs", 0, "-q", "--out", tmp_path / "d.h5")
    assert "about chance" in result.stderr and "BatchNorm layers' moving statistics" in result.stderr
    # A RefAE re-initialises that BatchNorm: after three short epochs its moving statistics are far from
    # those of the images it trained on, and the test Rec. Loss shows it, unless they are set from the data.
    for statistics, warned in (("moving", True), ("data", False)):
        result = invoke("train-refae", "--classifier", tmp_path / "bn.keras", "--dataset", npz_dataset, "--layer",
                        "bn", "--epochs", 3, "--batch-size", 8, "--lr", 0.005, "-q",
                        "--out", tmp_path / f"r_{statistics}.h5", "--bn-statistics", statistics)
        assert ("moving statistics may lag behind the weights: try --bn-statistics data" in result.stderr) == warned


def test_no_chance_warning_for_a_classifier_well_above_chance_or_on_other_data(tmp_path, npz_dataset, trained):
    arrays = dict(np.load(write_npz(tmp_path / "many.npz", n_train=80, n_test=400)))
    # Two classes, with 30 % of the 200 test labels swapped: the quadrant classifier gets 70 % right, above
    # chance by more than three standard errors (a rule of 1.5 / classes would have warned below 75 %).
    keep = {split: np.flatnonzero(arrays[f"y_{split}"] < 2) for split in ("train", "test")}
    two = {f"{k}_{split}": arrays[f"{k}_{split}"][keep[split]] for k in "xy" for split in ("train", "test")}
    swapped = np.arange(len(two["y_test"])) % 10 < 3
    two["y_test"] = np.where(swapped, 1 - two["y_test"], two["y_test"])
    np.savez(tmp_path / "two.npz", **two)
    quadrant_classifier().save(tmp_path / "c.keras")
    result = invoke("train-decoder", "--classifier", tmp_path / "c.keras", "--dataset", f"npz:{tmp_path / 'two.npz'}",
                    "--layer", -1, "--epochs", 0, "--out", tmp_path / "d.h5")
    assert "about chance" not in result.stderr
    # A classifier that records its dataset, on other images (here with every class renamed), may rightly
    # do no better than chance there.
    arrays = dict(np.load(npz_dataset.partition(":")[2]))
    other = {**arrays, "y_test": (arrays["y_test"] + 1) % 4, "y_train": (arrays["y_train"] + 1) % 4}
    np.savez(tmp_path / "other.npz", **other)
    result = invoke("train-decoder", "--classifier", trained["classifier"], "--dataset", f"npz:{tmp_path / 'other.npz'}",
                    "--layer", -1, "--epochs", 0, "--out", tmp_path / "o.h5")
    assert "about chance" not in result.stderr


def _nested_base(h):
    inputs = keras.Input(h.shape[1:])
    return keras.Model(inputs, keras.layers.Conv2D(2, 3)(keras.layers.Rescaling(1 / 255, name="to_unit")(inputs)))(h)


@pytest.mark.parametrize("scale, pixel_range, warned, build", [
    (1 / 255, None, True, None), (1 / 127.5, "-1,1", True, None), (1 / 255, "0,255", False, None),
    (2.0, None, False, None),
    (1 / 255, None, True, lambda h: keras.layers.Rescaling(1 / 255, name="to_unit")(keras.layers.RandomFlip()(h))),
    (1 / 255, None, True, _nested_base),  # a base model (EfficientNet's Rescaling inside) behind a head
])
def test_a_classifier_that_divides_by_255_first_is_said_to_take_0_to_255(tmp_path, npz_dataset, scale, pixel_range,
                                                                          warned, build):
    """Its decisions may survive images 255 times too dark, so the chance warning need not fire."""
    inputs = keras.Input((32, 32, 1))
    h = build(inputs) if build else keras.layers.Rescaling(scale, name="to_unit")(inputs)
    keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(h))).save(tmp_path / "c.keras")
    result = invoke("train-decoder", "--classifier", tmp_path / "c.keras", "--dataset", npz_dataset, "--layer", -1,
                    "--epochs", 0, "--out", tmp_path / "d.h5", *(("--pixel-range", pixel_range) if pixel_range else ()))
    said = (f"warning: the classifier's first step, to_unit (Rescaling by {scale:.4g}), takes pixel values 0..255, "
            f"but cladec feeds it {pixel_range or '0,1'}: pass --pixel-range 0,255")
    assert (said in result.stderr) == warned, result.stderr
