"""Training safety: divergence stops cleanly, seeds repeat bit for bit, killed runs resume."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest

from cladec_cli import runtime, training
from cladec_cli.classifier import load_classifier, train_classifier
from cladec_cli.cladec import train_decoder
from cladec_cli.data.datasets import load_dataset
from cladec_cli.data.feed import ArrayFeed, epoch_order
from cladec_cli.errors import TrainingError, UsageError
from cladec_cli.training import TrainSettings, backup_folder, compile_model, fit, prepare_backup
from conftest import invoke, read_group, write_npz


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny(npz_dataset):
    return load_dataset(npz_dataset)


def test_same_seed_same_weights_other_seed_other_weights(tmp_path, tiny):
    def weights(seed, name):
        settings = TrainSettings(epochs=1, batch_size=32, seed=seed, verbose=0)
        _, record = train_classifier(tiny, settings, tmp_path / name)
        return record["digest"], record["metrics"]["test_accuracy"]

    first, second, other = weights(3, "a.h5"), weights(3, "b.h5"), weights(4, "c.h5")
    assert first == second
    assert first[0] != other[0]
    assert read_group(tmp_path / "a.h5")["seed"] == 3


def test_diverging_loss_stops_and_writes_nothing(tmp_path, tiny):
    settings = TrainSettings(epochs=3, batch_size=32, lr=1e30, verbose=0)
    with pytest.raises(TrainingError, match="diverged"):
        train_classifier(tiny, settings, tmp_path / "c.h5")
    assert not (tmp_path / "c.h5").exists()


def cladec_command(*args):
    return [sys.executable, "-m", "cladec_cli", *map(str, args)]


def test_kill_keeps_files_and_resume_finishes(tmp_path, npz_dataset):
    out = tmp_path / "classifier.h5"
    invoke("train-classifier", "--dataset", npz_dataset, "--epochs", 1, "--batch-size", 32, "-q", "--out", out)
    before = digest(out)
    epochs = 40
    args = ("train-classifier", "--dataset", npz_dataset, "--epochs", epochs, "--batch-size", 16,
            "--out", out, "--overwrite", "--backup-interval", 0)
    process = subprocess.Popen(cladec_command(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metadata = backup_folder(out) / "training_metadata.json"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if metadata.exists() and json.loads(metadata.read_text() or "{}").get("epoch", -1) >= 1:
            break
        time.sleep(0.05)
    assert process.poll() is None, "training ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert digest(out) == before, "the previous model was touched by the killed run"
    done = json.loads(metadata.read_text())["epoch"] + 1

    resumed = subprocess.run(cladec_command(*args, "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Epoch 1/{epochs}" not in resumed.stderr
    assert f"Epoch {done + 1}/{epochs}" in resumed.stderr
    assert read_group(out)["epochs"] == epochs
    assert digest(out) != before
    assert not backup_folder(out).exists()


@pytest.mark.parametrize("interval, kept", [(0, True), (3600, False)])
def test_ctrl_c_says_in_one_line_whether_a_backup_is_kept(tmp_path, npz_dataset, monkeypatch, interval, kept):
    on_epoch_end = training.PeriodicBackup.on_epoch_end

    def then_interrupt(self, epoch, logs=None):
        on_epoch_end(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(training.PeriodicBackup, "on_epoch_end", then_interrupt)
    out = tmp_path / "c.h5"
    result = invoke("train-classifier", "--dataset", npz_dataset, "--epochs", 4, "--batch-size", 32, "-q",
                    "--backup-interval", interval, "--out", out, expect=130)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cladec: error: interrupted; "), result.stderr
    assert not out.exists() and backup_folder(out).exists() == kept
    if kept:
        assert "keeps the last backed-up epoch: rerun the same command with --resume" in lines[0]
    else:
        assert "no epoch had been backed up yet" in lines[0] and "at most every --backup-interval seconds" in lines[0]


def test_sigterm_from_a_batch_system_ends_a_training_as_ctrl_c_does(tmp_path, npz_dataset, monkeypatch):
    on_epoch_end = training.PeriodicBackup.on_epoch_end

    def then_terminated(self, epoch, logs=None):
        on_epoch_end(self, epoch, logs)
        if epoch == 1:
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(training.PeriodicBackup, "on_epoch_end", then_terminated)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "c.h5"
    result = invoke("train-classifier", "--dataset", npz_dataset, "--epochs", 4, "--batch-size", 32, "-q",
                    "--backup-interval", 0, "--out", out, expect=130)
    assert result.stderr.strip().splitlines() == [
        f"cladec: error: interrupted; {backup_folder(out)} keeps the last backed-up epoch: rerun the same command "
        f"with --resume"]
    assert signal.getsignal(signal.SIGTERM) == before  # as it was once the command ended


def test_left_over_run_needs_resume_or_overwrite(tmp_path):
    out = tmp_path / "model.h5"
    run = {"kind": "classifier", "lr": 0.002}
    assert prepare_backup(out, TrainSettings(), run).is_dir()
    with pytest.raises(UsageError, match="`resume`"):
        prepare_backup(out, TrainSettings(), run)
    assert prepare_backup(out, TrainSettings(resume=True), run).exists()
    with pytest.raises(UsageError, match="lr 0.002 -> 0.001"):
        prepare_backup(out, TrainSettings(resume=True), {**run, "lr": 0.001})
    prepare_backup(out, TrainSettings(overwrite=True), {**run, "lr": 0.001})
    assert json.loads((backup_folder(out) / "run.json").read_text())["lr"] == 0.001


@pytest.mark.parametrize("fused", [False, True])
def test_resuming_names_the_option_that_gives_back_cached_codes(tmp_path, fused):
    def run(cached):
        one = {"kind": "cladec_decoder", "alpha": 0.99, "cached_codes": cached}
        return {"runs": [one, {**one, "layer_index": -2}]} if fused else one

    out = tmp_path / "decoder.h5"
    prepare_backup(out, TrainSettings(), run(False))
    with pytest.raises(UsageError, match="the same ones \\(for train-decoder: `cache_codes` no\\) or pass") as refused:
        prepare_backup(out, TrainSettings(resume=True), run(True))
    # A several-layer run names each changed setting once, as a one-layer run does.
    assert "(cached_codes False -> True)" in str(refused.value)
    with pytest.raises(UsageError, match="same ones or pass"):  # a RefAE run records no cached codes
        prepare_backup(out, TrainSettings(resume=True), {"kind": "refae", "alpha": 0.99})


def test_a_several_layer_run_names_what_changed_per_setting_not_per_model(tmp_path):
    def run(precision, seed=0):
        one = {"kind": "refae", "runtime": {"precision": precision}, "seed": seed, "class_names": ["a"] * 50}
        return {"runs": [{**one, "layer_index": -i} for i in range(1, 5)]}

    out = [tmp_path / "a.h5", tmp_path / "b.h5"]
    prepare_backup(out, TrainSettings(), run("float32"))
    with pytest.raises(UsageError) as refused:
        prepare_backup(out, TrainSettings(resume=True), run("bfloat16", seed=3))
    assert "(runtime {'precision': 'float32'} -> {'precision': 'bfloat16'}; seed 0 -> 3)" in str(refused.value)
    assert "class_names" not in str(refused.value)


@pytest.mark.parametrize("fused", [False, True])
def test_a_backup_from_before_a_setting_was_recorded_resumes_with_its_older_value(tmp_path, fused):
    def run(**fields):
        one = {"kind": "refae", "lr": 0.001, **fields}
        return {"runs": [one, {**one, "layer_index": -2}]} if fused else one

    out = tmp_path / "refae.h5"
    older = run()
    prepare_backup(out, TrainSettings(), older)
    now = run(bn_statistics="moving", decoder_output="sigmoid", trust_model=False, pixel_range="0,1",
              layer_convention="blocks", runtime={"device": "CPU, 2 cores", "precision": "float32"})
    assert prepare_backup(out, TrainSettings(resume=True), now).is_dir()
    with pytest.raises(UsageError, match="other settings") as refused:
        prepare_backup(out, TrainSettings(resume=True), run(bn_statistics="data"))
    assert fused or "bn_statistics moving -> data" in str(refused.value)
    with pytest.raises(UsageError, match="other settings"):  # a setting that older runs did record
        prepare_backup(out, TrainSettings(resume=True), run(lr=0.002))
    with pytest.raises(UsageError, match="other settings"):  # one no older version left out
        prepare_backup(out, TrainSettings(resume=True), run(alpha=0.5))


def test_a_backup_without_settings_is_not_resumed(tmp_path):
    out = tmp_path / "model.h5"
    backup_folder(out).mkdir()
    with pytest.raises(UsageError, match="does not record its settings"):
        prepare_backup(out, TrainSettings(resume=True), {"kind": "classifier"})


def test_divergence_keeps_no_backup_and_a_smaller_lr_just_works(tmp_path, npz_dataset):
    out = tmp_path / "c.h5"
    args = ("train-classifier", "--dataset", npz_dataset, "--epochs", 2, "--batch-size", 32, "-q", "--out", out)
    result = invoke(*args, "--lr", "1e30", expect=1)
    assert "diverged" in result.stderr
    assert not out.exists() and not backup_folder(out).exists()  # no model, no backup of diverged weights
    invoke(*args, "--lr", "1e-3")
    assert read_group(out)["lr"] == 1e-3


class Interrupt(keras.callbacks.Callback):
    """Interrupts training as Ctrl-C would, once `after` epochs have finished (and been backed up)."""

    def __init__(self, after):
        super().__init__()
        self.after = after

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.after:
            raise KeyboardInterrupt


def interrupted_classifier(dataset, out, **settings):
    settings = TrainSettings(**{"epochs": 3, "batch_size": 32, "verbose": 0, "backup_interval": 0, **settings},
                             extra_callbacks=[Interrupt(after=1)])
    with pytest.raises(KeyboardInterrupt):
        train_classifier(dataset, settings, out)
    assert backup_folder(out).is_dir() and not out.exists()


def test_resume_refuses_other_settings_and_names_them(tmp_path, npz_dataset, tiny):
    out = tmp_path / "c.h5"
    interrupted_classifier(tiny, out)
    args = ("train-classifier", "--dataset", npz_dataset, "--epochs", 3, "--batch-size", 32, "-q", "--out", out,
            "--resume")
    for changed, named in ((("--lr", "1e-3"), "lr 0.002 -> 0.001"), (("--epochs", 4), "epochs 3 -> 4"),
                           (("--batch-size", 16), "batch_size 32 -> 16"), (("--seed", 1), "seed 0 -> 1"),
                           (("--limit", 40), "limit 0 -> 40"), (("--resize", "nearest"), "resize bilinear -> nearest")):
        result = invoke(*args, *changed, expect=2)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and named in lines[0] and "--overwrite" in lines[0], result.stderr
    assert backup_folder(out).is_dir() and not out.exists()  # the interrupted run is still there
    invoke(*args)  # the same settings resume
    assert read_group(out)["epochs"] == 3 and not backup_folder(out).exists()


def test_resume_refuses_another_dataset(tmp_path, tiny):
    out = tmp_path / "c.h5"
    interrupted_classifier(tiny, out)
    other = f"npz:{write_npz(tmp_path / 'other.npz', n_train=200, n_test=40, seed=5)}"
    result = invoke("train-classifier", "--dataset", other, "--epochs", 3, "--batch-size", 32, "-q",
                    "--out", out, "--resume", expect=2)
    assert "dataset npz:" in result.stderr and "other.npz" in result.stderr


def test_resume_of_a_decoder_refuses_another_layer_or_alpha(tmp_path, trained):
    out = tmp_path / "dec.h5"
    classifier, provenance = load_classifier(trained["classifier"])
    dataset = load_dataset(trained["dataset"])
    settings = TrainSettings(epochs=3, batch_size=32, verbose=0, backup_interval=0,
                             extra_callbacks=[Interrupt(after=1)])
    with pytest.raises(KeyboardInterrupt):
        train_decoder(classifier, provenance, dataset, -2, 0.0, settings, out)
    args = ("train-decoder", "--classifier", trained["classifier"], "--epochs", 3, "--batch-size", 32, "-q",
            "--out", out, "--resume")
    for changed, named in ((("--layer", -1), "layer_name block5 -> logits"), (("--alpha", 0.5), "alpha 0.0 -> 0.5")):
        result = invoke(*args, "--layer", -2, *changed, expect=2)
        assert named in result.stderr, result.stderr
    invoke(*args, "--layer", -2)
    assert read_group(out)["epochs"] == 3


def test_a_run_that_fails_before_its_first_epoch_leaves_no_backup(tmp_path, tiny):
    out = tmp_path / "c.h5"
    settings = TrainSettings(epochs=3, batch_size=32, verbose=0, extra_callbacks=[Interrupt(after=0)])
    with pytest.raises(KeyboardInterrupt):
        train_classifier(tiny, settings, out)
    assert not backup_folder(out).exists()


def test_a_run_that_fails_while_setting_up_the_device_leaves_no_backup(tmp_path, tiny, monkeypatch):
    def fail(settings):
        raise ValueError("no such device")

    monkeypatch.setattr(training, "start", fail)
    out = tmp_path / "c.h5"
    with pytest.raises(ValueError, match="no such device"):
        train_classifier(tiny, TrainSettings(epochs=1, batch_size=32, verbose=0), out)
    assert not backup_folder(out).exists()


def test_seeds_outside_what_numpy_and_keras_take_are_refused():
    for seed in (-1, 2**32):
        with pytest.raises(UsageError, match="`seed` must lie in 0 to 2\\*\\*32 - 1"):
            TrainSettings(seed=seed)


def _empty_record(folder):
    """As a process killed while writing it leaves a backup: the last record empty, the pair before whole."""
    (folder / "training_metadata.json").write_text("")


def _record_behind_its_weights(folder):
    """As a process killed after writing the last weights but before their record leaves a backup."""
    (folder / "training_metadata.json").write_text((folder / "training_metadata.json.bkp").read_text())
    assert json.loads((folder / "training_metadata.json").read_text())["epoch"] == 2


@pytest.mark.parametrize("after, damage", [(2, None), (3, _empty_record), (3, _record_behind_its_weights)],
                         ids=["whole", "empty record", "record behind its weights"])
def test_resumed_run_gives_the_weights_of_an_uninterrupted_one(tmp_path, tiny, after, damage):
    # A damaged last backup gives way to the one before it: the resumed run repeats an epoch, no more.
    settings = dict(epochs=4, batch_size=32, seed=5, verbose=0, backup_interval=0)
    _, straight = train_classifier(tiny, TrainSettings(**settings), tmp_path / "straight.h5")
    out = tmp_path / "resumed.h5"
    with pytest.raises(KeyboardInterrupt):
        train_classifier(tiny, TrainSettings(**settings, extra_callbacks=[Interrupt(after=after)]), out)
    assert backup_folder(out).exists() and not out.exists()
    if damage:
        damage(backup_folder(out))
    _, resumed = train_classifier(tiny, TrainSettings(**settings, resume=True), out)
    assert resumed["digest"] == straight["digest"]


def test_a_damaged_backup_with_none_before_it_is_refused_in_one_line(tmp_path, npz_dataset, tiny):
    out = tmp_path / "c.h5"
    interrupted_classifier(tiny, out)
    (backup_folder(out) / "training_metadata.json").write_text("")
    result = invoke("train-classifier", "--dataset", npz_dataset, "--epochs", 3, "--batch-size", 32, "-q",
                    "--out", out, "--resume", expect=1)
    assert result.stderr.strip().splitlines() == [
        f"cladec: error: the interrupted run's backup in {backup_folder(out)} is damaged (unreadable "
        f"training_metadata.json: Expecting value: line 1 column 1 (char 0)) and no earlier one is kept; delete "
        f"that folder (or pass --overwrite) to start again"]
    assert not out.exists()
    # Two epochs backed up, both records unreadable.
    again = tmp_path / "again.h5"
    settings = TrainSettings(epochs=4, batch_size=32, verbose=0, backup_interval=0,
                             extra_callbacks=[Interrupt(after=2)])
    with pytest.raises(KeyboardInterrupt):
        train_classifier(tiny, settings, again)
    for name in ("training_metadata.json", "training_metadata.json.bkp"):
        (backup_folder(again) / name).write_text("{")
    with pytest.raises(TrainingError, match="is damaged .* and the one before it could not be read either"):
        train_classifier(tiny, TrainSettings(epochs=4, batch_size=32, verbose=0, resume=True), again)


def test_a_backup_of_another_model_layout_is_refused_in_one_line(tmp_path, npz_dataset, tiny):
    out = tmp_path / "c.h5"
    interrupted_classifier(tiny, out)
    weights = backup_folder(out) / "latest.weights.h5"
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    other.save_weights(weights)  # whole, with a record that matches it, but of another model
    record = backup_folder(out) / "training_metadata.json"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    record.write_text(json.dumps({**json.loads(record.read_text()), "weights_sha256": digest}))
    result = invoke("train-classifier", "--dataset", npz_dataset, "--epochs", 3, "--batch-size", 32, "-q",
                    "--out", out, "--resume", expect=1)
    said = result.stderr.strip().splitlines()
    assert len(said) == 1 and said[0].startswith(
        f"cladec: error: the interrupted run's backup in {backup_folder(out)} holds weights that do not fit this "
        "run's model (an earlier version may have laid it out otherwise; Keras: A total of ")
    assert said[0].endswith("; delete that folder (or pass --overwrite) to start again") and not out.exists()


def test_ctrl_c_while_a_backup_is_written_waits_until_it_is_whole(tmp_path, tiny, monkeypatch, ctrl_c_raises):
    save_weights = keras.Model.save_weights

    def saved_then_interrupted(self, *args, **kwargs):
        save_weights(self, *args, **kwargs)
        signal.raise_signal(signal.SIGINT)  # Ctrl-C between the weights and the epoch record

    monkeypatch.setattr(keras.Model, "save_weights", saved_then_interrupted)
    settings = dict(epochs=3, batch_size=32, seed=5, verbose=0, backup_interval=0)
    out = tmp_path / "c.h5"
    with pytest.raises(KeyboardInterrupt):
        train_classifier(tiny, TrainSettings(**settings), out)
    record = backup_folder(out) / "training_metadata.json"
    assert json.loads(record.read_text())["epoch"] == 1
    monkeypatch.setattr(keras.Model, "save_weights", save_weights)
    _, resumed = train_classifier(tiny, TrainSettings(**settings, resume=True), out)
    _, straight = train_classifier(tiny, TrainSettings(**settings), tmp_path / "straight.h5")
    assert resumed["digest"] == straight["digest"]


def test_backups_are_saved_at_most_once_per_interval(tmp_path, tiny):
    for interval, kept in ((0, True), (3600, False)):
        out = tmp_path / f"every{interval}.h5"
        settings = TrainSettings(epochs=3, batch_size=32, verbose=0, backup_interval=interval,
                                 extra_callbacks=[Interrupt(after=2)])
        with pytest.raises(KeyboardInterrupt):
            train_classifier(tiny, settings, out)
        assert (backup_folder(out) / "training_metadata.json").exists() == kept


def test_constant_learning_rate_is_adams_rate_throughout(tmp_path, tiny):
    from cladec_cli.training import make_optimizer

    constant = make_optimizer(TrainSettings(epochs=2, lr=1e-3, lr_schedule="constant"), 10)
    cosine = make_optimizer(TrainSettings(epochs=2, lr=1e-3), 10)
    assert float(constant.learning_rate) == pytest.approx(1e-3)
    cosine.iterations.assign(10)  # half way: the cosine rate has fallen to half
    assert float(cosine.learning_rate) == pytest.approx(5e-4, rel=1e-3)
    _, record = train_classifier(tiny, TrainSettings(epochs=1, batch_size=32, verbose=0, lr_schedule="constant"),
                                 tmp_path / "c.h5")
    assert record["lr_schedule"] == "constant"
    with pytest.raises(UsageError, match="learning-rate schedule"):
        TrainSettings(lr_schedule="step")


def test_a_resumed_run_may_move_to_another_device_but_not_another_precision():
    from cladec_cli.training import _differences

    run = {"epochs": 4, "runtime": {"device": "GPU:0 NVIDIA H100", "precision": "bfloat16", "replicas": 1}}
    moved = {"epochs": 4, "runtime": {"device": "GPU:0 NVIDIA H200", "precision": "bfloat16", "workers": 2}}
    assert _differences(run, moved) == []
    assert _differences({"runs": [run]}, {"runs": [moved]}) == []
    changed = {**moved, "runtime": {**moved["runtime"], "precision": "float32"}}
    assert _differences(run, changed) == ["runtime {'precision': 'bfloat16'} -> {'precision': 'float32'}"]


@pytest.mark.skipif(not runtime.has_tensorflow(), reason="tf.data serves batches under TensorFlow only")
def test_fit_serves_in_memory_batches_through_tf_data_in_each_epochs_order(monkeypatch):
    import tensorflow as tf

    seen = []

    class Recorder(keras.Model):
        """Records the labels of every training batch, in the order `fit` serves them."""

        def __init__(self):
            super().__init__()
            self.scale = self.add_weight(shape=(), initializer="ones")

        def call(self, x):
            return x * self.scale

        def train_step(self, data):
            tf.py_function(lambda labels: seen.append(labels.numpy()), [data[1]], [])
            return {"loss": tf.constant(0.0)}

    n, seed, epochs = 40, 3, 3
    feed = ArrayFeed(np.zeros((n, 1), np.float32), np.arange(n), 16, shuffle=True, seed=seed)
    model = Recorder()
    model.compile(optimizer="adam", loss="mse")
    served = []
    keras_fit = model.fit
    monkeypatch.setattr(model, "fit", lambda data, **kw: served.append(data) or keras_fit(data, **kw))
    fit(model, feed, TrainSettings(epochs=epochs, batch_size=16, seed=seed, verbose=0, steps_per_execution=1,
                                   precision="float32"))
    assert isinstance(served[0], tf.data.Dataset)
    per_epoch = np.split(np.concatenate(seen), epochs)
    for epoch, labels in enumerate(per_epoch):
        np.testing.assert_array_equal(labels, epoch_order(n, seed, epoch))


def test_compiling_builds_the_optimizers_variables_before_the_first_step():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    feed = ArrayFeed(np.zeros((8, 3), np.float32), np.zeros((8, 2), np.float32), 4)
    compile_model(model, TrainSettings(precision="float32"), feed, "mse")
    assert model.optimizer.built
    # Adam's two moments for each of the kernel and the bias, created eagerly, not in the traced step.
    names = [v.path for v in model.optimizer.variables]
    assert sum("momentum" in n for n in names) == 2 and sum("velocity" in n for n in names) == 2


def _two_output_model():
    images = keras.Input((8, 8, 1))
    h = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3)(images))
    return keras.Model(images, {"scores": keras.layers.Dense(3)(keras.layers.Flatten()(h)),
                                "sse": keras.ops.sum(keras.ops.square(h), axis=(1, 2, 3))})


def _fed_batch_sizes(model, monkeypatch):
    """The sizes of the batches `model.predict` is given from now on (a list that fills as it runs)."""
    sizes, real = [], model.predict

    def spy(data, batch_size=None, verbose="auto"):
        if isinstance(data, keras.utils.PyDataset):
            sizes.extend(len(keras.tree.flatten(data[i])[0]) for i in range(len(data)))
        elif hasattr(data, "as_numpy_iterator"):  # tf.data, as arrays are fed under TensorFlow
            sizes.extend(len(keras.tree.flatten(batch)[0]) for batch in data.as_numpy_iterator())
        else:
            sizes.extend(len(data[start:start + batch_size]) for start in range(0, len(data), batch_size))
        return real(data, batch_size=batch_size, verbose=verbose)

    monkeypatch.setattr(model, "predict", spy)
    return sizes


@pytest.mark.parametrize("as_feed", [False, True])
def test_whole_batch_prediction_feeds_whole_batches_and_gives_plain_outputs(monkeypatch, as_feed):
    from cladec_cli.data.feed import images_only
    from cladec_cli.training import predict

    images = np.random.default_rng(0).uniform(size=(70, 8, 8, 1)).astype("float32")
    model = _two_output_model()
    fed = _fed_batch_sizes(model, monkeypatch)

    def data(n=70):
        return ArrayFeed(images[:n], np.zeros(n), 32, images_only) if as_feed else images[:n]

    padded = predict(model, data(), batch_size=32, whole_batches=True)
    assert fed == [32, 32, 32]  # the last 6 images padded to a whole batch
    fed.clear()
    plain = predict(model, data(), batch_size=32, whole_batches=False)
    assert fed == [32, 32, 6]
    for name in ("scores", "sse"):
        assert padded[name].shape == plain[name].shape == (70,) + plain[name].shape[1:]
        np.testing.assert_allclose(padded[name], plain[name], rtol=1e-5, atol=1e-6)
    fed.clear()
    few = predict(model, data(5), batch_size=32, whole_batches=True)
    assert fed == [5]  # one batch: nothing to pad it for
    np.testing.assert_allclose(few["sse"], plain["sse"][:5], rtol=1e-5)


@pytest.mark.parametrize("xla", ["on", "off"])
def test_a_model_that_xla_cannot_compile_is_named_in_one_line(xla):
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.RandomRotation(0.1), keras.layers.Flatten(),
                              keras.layers.Dense(2)], name="augmented")
    said = []
    settings = TrainSettings(epochs=1, xla=xla, deterministic=False, announce=said.append)
    data = ArrayFeed(np.zeros((4, 8, 8, 1), np.float32), np.zeros(4), 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compile_model(model, settings, data, "sparse_categorical_crossentropy")
    assert not model.jit_compile
    assert said == (["warning: XLA is off for augmented: XLA cannot compile its RandomRotation layers"]
                    if xla == "on" else [])
    # Keras' own warning, which names no layer, is not shown as well.
    assert not [w for w in caught if "jit_compile" in str(w.message)]


def test_settings_take_numpy_numbers_and_refuse_what_is_no_number():
    settings = TrainSettings(epochs=np.int64(2), batch_size=np.int32(16), seed=np.uint32(3), lr=np.float32(1e-3),
                             steps_per_execution=np.int64(2), backup_interval=np.int64(5))
    assert (settings.epochs, settings.batch_size, settings.seed, settings.steps_per_execution) == (2, 16, 3, 2)
    assert all(type(v) is int for v in (settings.epochs, settings.batch_size, settings.seed))
    assert type(settings.lr) is float and type(settings.backup_interval) is float
    json.dumps(settings.provenance())
    for bad, message in ((dict(epochs=1.5), "`epochs` must be a whole number, got 1.5"),
                         (dict(epochs="2"), "`epochs` must be a whole number, got '2'"),
                         (dict(batch_size=True), "`batch_size` must be a whole number"),
                         (dict(lr="fast"), "`lr` must be a number, got 'fast'")):
        with pytest.raises(UsageError, match=message):
            TrainSettings(**bad)


def test_a_setting_changed_after_use_is_resolved_again():
    settings = TrainSettings(precision="float32", steps_per_execution=1)
    assert settings.runtime().precision == "float32"
    settings.precision, settings.steps_per_execution = "bfloat16", 3
    assert settings.runtime().precision == "bfloat16" and settings.runtime().steps_per_execution == 3


@pytest.mark.tensorflow_only
def test_a_training_puts_back_the_process_determinism(tmp_path, tiny):
    from tensorflow.python.framework import config as tf_config

    runtime._set_determinism(False)
    train_classifier(tiny, TrainSettings(epochs=1, batch_size=32, verbose=0, deterministic=True), tmp_path / "c.h5")
    assert not tf_config.is_op_determinism_enabled()


def test_ctrl_c_in_a_notebook_shows_what_was_kept_in_the_traceback(tmp_path, tiny, monkeypatch):
    def interrupt(self, epoch, logs=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(training.PeriodicBackup, "on_epoch_end", interrupt)
    with pytest.raises(KeyboardInterrupt) as caught:
        train_classifier(tiny, TrainSettings(epochs=2, batch_size=32, verbose=0, backup_interval=3600),
                         tmp_path / "c.h5")
    notes = getattr(caught.value, "__notes__", [])
    if sys.version_info >= (3, 11):
        assert notes == ["cladec: no epoch had been backed up yet (a backup is saved at the end of an epoch, at "
                         "most every `backup_interval` seconds), so nothing is kept"]


def test_tensorflows_retracing_warning_is_dropped_while_cladec_predicts_and_only_then(caplog, monkeypatch):
    import logging

    logger = logging.getLogger("tensorflow")
    retraced = "5 out of the last 5 calls to <function f> triggered tf.function retracing. Tracing is ..."

    class Warns:
        def predict(self, data, **kwargs):
            logger.warning(retraced)
            logger.warning("something else")
            return data

    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        training.predict(Warns(), np.zeros((2, 3)))
        logger.warning(retraced)  # the user's own, outside cladec's predictions
    assert [record.getMessage() for record in caplog.records] == ["something else", retraced]
