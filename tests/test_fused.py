"""Helpers for training several models in one pass."""

import json
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from cladec_cli import artifacts, training
from cladec_cli.errors import UsageError
from cladec_cli.fused import in_turn, model_history, one_at_a_time, one_output_each, output_labels, renamed, seeded
from cladec_cli.training import TrainSettings, backup_folder


def test_model_history_weighs_a_models_own_outputs():
    history = {"loss": [9.0, 7.0], "rec_1_loss": [2.0, 1.0], "ce_1_loss": [4.0, 3.0], "rec_2_loss": [5.0, 4.0]}
    assert model_history(history, {"rec_1": 0.5, "ce_1": 0.25}) == {"loss": [2.0, 1.25]}
    assert model_history(history, {"rec_2": 1.0}) == {"loss": [5.0, 4.0]}
    # A model with one output has only Keras' total.
    assert model_history({"loss": [3.0]}, {"rec_1": 1.0}) == {"loss": [3.0]}
    assert model_history({}, {"rec_1": 1.0}) == {"loss": []}


def test_output_labels_are_the_layers_names_as_keras_allows_them_and_apart():
    def named(*names):
        return [SimpleNamespace(name=name) for name in names]

    assert output_labels(named("block5", "block4")) == ["block5", "block4"]
    assert output_labels(named("backbone/conv.1", "dense")) == ["backbone_conv_1", "dense"]
    assert output_labels(named("a/b", "a.b", "c")) == ["1_a_b", "2_a_b", "3_c"]
    assert output_labels(named("//")) == ["layer"]


def test_seeded_builds_start_alike():
    first = seeded(5, lambda: keras.initializers.GlorotUniform()((4, 3)))
    keras.initializers.GlorotUniform()((4, 3))  # moves the random state on
    again = seeded(5, lambda: keras.initializers.GlorotUniform()((4, 3)))
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))


def test_renamed_model_shares_layers_and_config():
    inputs = keras.Input((4,), name="code")
    model = keras.Model(inputs, keras.layers.Dense(2, name="d")(inputs), name="decoder_3")
    copy = renamed(model, "decoder")
    assert copy.name == "decoder"
    assert copy.get_layer("d") is model.get_layer("d")
    config = model.get_config()
    assert copy.get_config() == {**config, "name": "decoder"}


def test_one_output_each(tmp_path):
    assert one_output_each(["a", "b"], [tmp_path / "a.h5", str(tmp_path / "b.h5")]) == [tmp_path / "a.h5",
                                                                                      tmp_path / "b.h5"]
    with pytest.raises(UsageError, match="2 layers but 1 output"):
        one_output_each(["a", "b"], [tmp_path / "a.h5"])
    with pytest.raises(UsageError, match="same file"):
        one_output_each(["a", "b"], [tmp_path / "a.h5", tmp_path / "a.h5"])


def test_only_float16_trains_several_models_one_after_another():
    assert one_at_a_time(TrainSettings(precision="float16"), 2)
    assert not one_at_a_time(TrainSettings(precision="float16"), 1)
    assert not one_at_a_time(TrainSettings(precision="float32"), 4)
    assert not one_at_a_time(TrainSettings(precision="bfloat16"), 4)


RUNS = [{"kind": "cladec_decoder", "layer_name": name, "epochs": 2} for name in ("a", "b")]


class Trainer:
    """A stand-in for training one model: records what it was asked to train."""

    def __init__(self):
        self.calls = []

    def __call__(self, i, settings):
        self.calls.append((i, settings.tensorboard))
        return f"model {i}", {"trained": i}


def saved(path, run):
    """A tiny model saved at `path` as a run with the settings `run` saves it."""
    inputs = keras.Input((2,))
    artifacts.save_model(keras.Model(inputs, keras.layers.Dense(1)(inputs)), path,
                         {**artifacts.base_provenance(run["kind"]), **run})
    return path


@pytest.mark.parametrize("left_over", ["second output", "second model's interrupted run", "one-pass run"])
def test_in_turn_checks_every_output_and_interrupted_run_before_training(tmp_path, left_over):
    outs = [tmp_path / "a.h5", tmp_path / "b.h5"]
    left = {"second output": outs[1], "second model's interrupted run": backup_folder(outs[1]),
            "one-pass run": backup_folder(outs)}[left_over]
    if left_over == "second output":
        left.write_bytes(b"keep me")
    else:
        left.mkdir()
    train = Trainer()
    with pytest.raises(UsageError, match="already exists" if left_over == "second output" else "interrupted run"):
        in_turn(outs, RUNS, TrainSettings(), train)
    assert train.calls == [] and not outs[0].exists() and left.exists()
    # --overwrite starts again.
    assert in_turn(outs, RUNS, TrainSettings(overwrite=True), train) == [("model 0", {"trained": 0}),
                                                                         ("model 1", {"trained": 1})]
    assert not backup_folder(outs).exists()


def test_in_turn_removes_nothing_when_a_later_check_refuses(tmp_path):
    outs = [tmp_path / "a.h5", tmp_path / "b.h5"]
    backup_folder(outs).mkdir()
    backup_folder(outs[1]).mkdir()
    (backup_folder(outs[1]) / "run.json").write_text(json.dumps({**RUNS[1], "epochs": 9}))
    train = Trainer()
    with pytest.raises(UsageError, match="other settings"):
        in_turn(outs, RUNS, TrainSettings(resume=True, overwrite=True), train)
    assert train.calls == [] and backup_folder(outs).exists() and backup_folder(outs[1]).exists()


def test_in_turn_resumes_with_the_models_saved_under_the_same_settings(tmp_path, monkeypatch):
    outs = [saved(tmp_path / "a.h5", RUNS[0]), tmp_path / "b.h5"]
    train = Trainer()
    with pytest.raises(UsageError, match="`resume` to keep it"):
        in_turn(outs, RUNS, TrainSettings(), train)
    other = [{**run, "epochs": 3} for run in RUNS]
    with pytest.raises(UsageError, match="already exists"):
        in_turn(outs, other, TrainSettings(resume=True), train)
    assert train.calls == []
    loads, load = [], artifacts.load_model

    def load_model(path, kind=None, trust=False):
        loads.append((path, kind, trust, len(train.calls)))
        return load(path, kind, trust)

    monkeypatch.setattr(artifacts, "load_model", load_model)
    (model, record), trained = in_turn(outs, RUNS, TrainSettings(resume=True, trust_model=True), train)
    assert train.calls == [(1, None)] and trained == ("model 1", {"trained": 1})
    assert record["layer_name"] == "a" and isinstance(model, keras.Model)
    # Loaded as the kind its run trains, trusting what the run trusts, before anything trains.
    assert loads == [(outs[0], "cladec_decoder", True, 0)]


def test_in_turn_gives_each_model_its_own_tensorboard_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "check_tensorboard", lambda: None)  # no summary writer is made here
    train = Trainer()
    in_turn([tmp_path / "a.h5", tmp_path / "b.h5"], RUNS, TrainSettings(tensorboard=str(tmp_path / "tb")), train)
    assert train.calls == [(0, str(tmp_path / "tb" / "a")), (1, str(tmp_path / "tb" / "b"))]
    train = Trainer()
    in_turn([tmp_path / "x" / "d.h5", tmp_path / "y" / "d.h5"], RUNS, TrainSettings(tensorboard=str(tmp_path / "tb")),
            train)
    assert train.calls == [(0, str(tmp_path / "tb" / "1_d")), (1, str(tmp_path / "tb" / "2_d"))]
