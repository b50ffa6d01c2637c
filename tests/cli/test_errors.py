"""Every bad input gets one line on stderr, a non-zero exit code and no file written."""

import os
import re
import zipfile

import h5py
import keras
import pytest
from click.testing import CliRunner

from cladec_cli.cli.main import cli
from cladec_cli.errors import ArtifactError
from conftest import write_idx_dataset


def run_bad(args, tmp_path, code=2, words=()):
    """Invoke the CLI expecting failure; check exit code, one-line message, no traceback, no new files."""
    before = set(os.listdir(tmp_path))
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cladec: error: ")
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0]
    assert set(os.listdir(tmp_path)) == before, "a failed command left files behind"
    return lines[0]


def test_missing_model_file(tmp_path):
    run_bad(["layers", "--classifier", tmp_path / "nope.h5"], tmp_path, words=["does not exist"])


def test_corrupt_model_file(tmp_path):
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(b"not an hdf5 file at all")
    run_bad(["layers", "--classifier", bad], tmp_path, words=["not an HDF5 model file"])


def test_a_keras_file_by_another_name_is_named_as_such(tmp_path):
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(tmp_path / "m.keras")
    (tmp_path / "m.keras").rename(tmp_path / "m.zip")
    run_bad(["layers", "--classifier", tmp_path / "m.zip"], tmp_path,
            words=["is a zip archive, as a .keras model file is", "rename it to m.keras"])
    with zipfile.ZipFile(tmp_path / "data.zip", "w") as archive:  # a zip of something else
        archive.writestr("images.txt", "")
    said = run_bad(["layers", "--classifier", tmp_path / "data.zip"], tmp_path)
    assert said.endswith("data.zip is not an HDF5 model file (truncated or corrupt?)")


def test_a_model_file_without_its_weights_is_named_as_such(tmp_path, trained):
    cut = tmp_path / "cut.h5"
    cut.write_bytes(trained["decoder"].read_bytes())
    with h5py.File(cut, "a") as f:
        del f["model_weights"]
    run_bad(["explain", "--classifier", trained["classifier"], "--decoder", cut, "--out", tmp_path / "g.png"], tmp_path,
            code=2, words=["cannot load", "lacks the part 'model_weights' that a Keras model file holds"])


def test_truncated_model_file(tmp_path, trained):
    data = trained["classifier"].read_bytes()
    cut = tmp_path / "truncated.h5"
    cut.write_bytes(data[: len(data) // 2])
    run_bad(["layers", "--classifier", cut], tmp_path)


def test_wrong_kind_of_artifact(tmp_path, trained):
    run_bad(["layers", "--classifier", trained["decoder"]], tmp_path, words=["ClaDec decoder", "not a classifier"])
    run_bad(["explain", "--classifier", trained["classifier"], "--decoder", trained["refae"],
             "--out", tmp_path / "g.png"], tmp_path, words=["not a ClaDec decoder"])


def test_decoder_for_another_layer(tmp_path, trained):
    other = trained["root"] / "refae_L-1.h5"
    if not other.exists():
        CliRunner().invoke(cli, ["train-refae", "--classifier", str(trained["classifier"]), "--layer", "-1",
                                 "--epochs", "0", "-q", "--out", str(other)])
    run_bad(["explain", "--classifier", trained["classifier"], "--decoder", trained["decoder"],
             "--refae", other, "--out", tmp_path / "g.png"], tmp_path, words=["layer"])


def test_unknown_layer(tmp_path, trained):
    run_bad(["train-decoder", "--classifier", trained["classifier"], "--layer", "block9",
             "--out", tmp_path / "d.h5"], tmp_path, words=["unknown layer", "block5"])


@pytest.mark.parametrize("option,value,words", [
    ("--alpha", "1.5", ["--alpha"]),
    ("--alpha", "-0.1", ["--alpha"]),
    ("--epochs", "-1", ["--epochs"]),
    ("--batch-size", "0", ["--batch-size"]),
    ("--seed", "-1", ["--seed", "-1 is outside 0 to 4294967295"]),
    ("--seed", "4294967296", ["--seed"]),
])
def test_bad_training_numbers(tmp_path, trained, option, value, words):
    run_bad(["train-decoder", "--classifier", trained["classifier"], option, value,
             "--out", tmp_path / "d.h5"], tmp_path, words=words)


def test_bad_epochs_for_classifier(tmp_path, npz_dataset):
    run_bad(["train-classifier", "--dataset", npz_dataset, "--epochs", "-3", "--out", tmp_path / "c.h5"],
            tmp_path, words=["--epochs"])


def test_not_a_number(tmp_path, npz_dataset):
    run_bad(["train-classifier", "--dataset", npz_dataset, "--epochs", "many", "--out", tmp_path / "c.h5"],
            tmp_path, words=["--epochs"])


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a TensorFlow conflict")
def test_xla_with_tensorflows_determinism(tmp_path, npz_dataset):
    # Keras would train without XLA and the device line would say on.
    run_bad(["train-classifier", "--dataset", npz_dataset, "--xla", "on", "--deterministic", "--out", tmp_path / "c.h5"],
            tmp_path, words=["--xla on and --deterministic", "add --no-deterministic or drop --xla on"])
    # reproduce refuses them before it writes its settings
    run_bad(["reproduce", "table2", "--xla", "on", "--deterministic", "--out", tmp_path / "r"], tmp_path,
            words=["--xla on and --deterministic"])


def test_unknown_dataset(tmp_path):
    run_bad(["train-classifier", "--dataset", "cifar1000", "--out", tmp_path / "c.h5"], tmp_path,
            words=["unknown dataset", "fashion_mnist"])


def test_a_missing_choice_is_named_in_one_line(tmp_path):
    line = run_bad(["reproduce", "--out", tmp_path / "r"], tmp_path)
    assert "Missing argument 'TABLE'. Choose from: table2, table3, table4" in line


def test_no_data_found(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    run_bad(["train-classifier", "--data-dir", empty, "--out", tmp_path / "c.h5"], tmp_path,
            words=["has no fashion_mnist files"])


def test_missing_data_dir(tmp_path):
    run_bad(["train-classifier", "--data-dir", tmp_path / "absent", "--out", tmp_path / "c.h5"], tmp_path,
            words=["does not exist"])


def test_images_that_do_not_fit(tmp_path, trained):
    data = write_idx_dataset(tmp_path / "idx")
    # The trained classifier predicts 4 classes; Fashion-MNIST has 10.
    run_bad(["train-decoder", "--classifier", trained["classifier"], "--dataset", "fashion_mnist",
             "--data-dir", data, "--out", tmp_path / "d.h5"], tmp_path, words=["10 classes"])


def test_empty_image_folder(tmp_path, trained):
    empty = tmp_path / "images"
    empty.mkdir()
    run_bad(["explain", "--classifier", trained["classifier"], "--decoder", trained["decoder"],
             "--images", empty, "--out", tmp_path / "g.png"], tmp_path, words=["no image files"])


def test_unreadable_image(tmp_path, trained):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    run_bad(["explain", "--classifier", trained["classifier"], "--decoder", trained["decoder"],
             "--images", folder, "--out", tmp_path / "g.png"], tmp_path, words=["broken.png"])


def test_existing_output_is_not_overwritten(tmp_path, trained):
    out = tmp_path / "classifier.h5"
    out.write_bytes(b"precious")
    run_bad(["train-classifier", "--dataset", trained["dataset"], "--epochs", "0", "--out", out], tmp_path,
            words=["already exists", "--overwrite"])
    assert out.read_bytes() == b"precious"


def test_a_classifier_of_no_recorded_dataset_asks_for_one_naming_the_choices(tmp_path):
    inputs = keras.Input((32, 32, 1))
    path = tmp_path / "own.keras"
    keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(inputs))).save(path)
    run_bad(["train-decoder", "--classifier", path, "--out", tmp_path / "d.h5"], tmp_path,
            words=["the classifier records no dataset; pass --dataset: fashion_mnist, mnist, tiny_imagenet, "
                   "folder:PATH or npz:PATH"])


def test_tensorflows_other_model_formats_are_named_with_what_to_do(tmp_path):
    from cladec_cli import artifacts

    saved = tmp_path / "savedmodel"
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"")
    (tmp_path / "ckpt.index").write_bytes(b"")
    (tmp_path / "ckpt.data-00000-of-00001").write_bytes(b"")
    said = {"SavedModel": f"{saved} is a TensorFlow SavedModel folder, which Keras 3 cannot load as a model",
            "checkpoint": f"{tmp_path / 'ckpt'} is a TensorFlow checkpoint, which holds weights but no architecture"}
    for path, kind in ((saved, "SavedModel"), (saved / "saved_model.pb", "SavedModel"), (tmp_path / "ckpt", "checkpoint"),
                       (tmp_path / "ckpt.index", "checkpoint"), (tmp_path / "ckpt.data-00000-of-00001", "checkpoint")):
        run_bad(["layers", "--classifier", path], tmp_path, words=[said[kind]])
        with pytest.raises(ArtifactError, match=re.escape(said[kind])):
            artifacts.load_model(path)


def test_explain_refuses_an_existing_output_before_it_loads_a_model(tmp_path, trained, monkeypatch):
    from cladec_cli import explainer

    loaded = []
    monkeypatch.setattr(explainer, "load_explainer", lambda *a, **k: loaded.append(a))
    common = ["explain", "--classifier", trained["classifier"], "--decoder", trained["decoder"]]
    for existing, args in (("g.png", ["--out", tmp_path / "g.png"]),
                           ("a.npz", ["--out", tmp_path / "new.png", "--save-arrays", tmp_path / "a.npz"])):
        (tmp_path / existing).write_bytes(b"precious")
        run_bad(common + args, tmp_path, words=["already exists", "--overwrite"])
        assert (tmp_path / existing).read_bytes() == b"precious"
    assert loaded == []


def test_an_output_folder_that_cannot_be_written_is_refused_before_training(tmp_path, trained, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    run_bad(["train-classifier", "--dataset", trained["dataset"], "--epochs", "1", "--out", blocker / "c.h5"],
            tmp_path, words=[f"cannot write {blocker / 'c.h5'}: the folder {blocker} refuses new files"])
    # A read-only folder, as a user other than root finds it.
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "x"))

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    run_bad(["train-classifier", "--dataset", trained["dataset"], "--epochs", "1", "--out", tmp_path / "c.h5"],
            tmp_path, words=["refuses new files (Permission denied)"])


def test_a_file_system_error_is_one_line(tmp_path, trained, monkeypatch):
    from cladec_cli import artifacts

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "c.h5"))

    monkeypatch.setattr(artifacts, "atomic_path", full)
    run_bad(["train-classifier", "--dataset", trained["dataset"], "--epochs", "0", "--out", tmp_path / "c.h5"],
            tmp_path, code=1, words=[f"{tmp_path / 'c.h5'}: No space left on device"])


def test_a_resize_other_than_the_classifiers_is_refused(tmp_path, trained):
    run_bad(["train-decoder", "--classifier", trained["classifier"], "--resize", "nearest", "--out", tmp_path / "d.h5"],
            tmp_path, words=["--resize nearest differs from the classifier's bilinear"])


def test_an_empty_path_is_refused(tmp_path, trained):
    run_bad(["train-decoder", "--classifier", trained["classifier"], "--out", ""], tmp_path,
            words=["Invalid value for '--out': is empty"])


def test_debug_shows_traceback(tmp_path):
    result = CliRunner().invoke(cli, ["--debug", "layers", "--classifier", str(tmp_path / "nope.h5")])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr


def test_debug_after_the_command_is_an_unknown_option_not_a_traceback(tmp_path):
    run_bad(["layers", "--classifier", tmp_path / "nope.h5", "--debug"], tmp_path, words=["No such option '--debug'"])


def test_data_recorded_by_a_relative_path_that_is_not_there_any_more(tmp_path, monkeypatch):
    from conftest import invoke, write_npz

    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    write_npz("tiny.npz", n_train=40, n_test=12)
    invoke("train-classifier", "--dataset", "npz:tiny.npz", "--epochs", 1, "--batch-size", 32, "-q",
           "--limit", 30, "--resize", "nearest", "--out", "c.h5")
    monkeypatch.chdir(tmp_path)
    line = run_bad(["train-decoder", "--classifier", "project/c.h5", "--layer", -1, "--out", "d.h5"], tmp_path,
                   words=["the classifier was trained on npz:tiny.npz, which is not there (relative to the folder "
                          f"it was trained in; this command runs in {tmp_path})",
                          "pass --dataset with where the data are now and --limit 30 --resize nearest, as it records"])
    assert not (tmp_path / "d.h5").exists(), line
    invoke("train-decoder", "--classifier", "project/c.h5", "--layer", -1, "--dataset", "npz:project/tiny.npz",
           "--limit", 30, "--resize", "nearest", "--epochs", 1, "--batch-size", 32, "-q", "--out", "d.h5")
