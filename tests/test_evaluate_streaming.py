"""evaluate streams: image folders are never held in memory whole, and give the numbers that the
same images held in memory give."""

import numpy as np
import pytest

from cladec_cli.data.datasets import load_dataset
from cladec_cli.data.split import Split
from cladec_cli import evaluate as evaluate_module
from cladec_cli import metrics, training
from cladec_cli.errors import UsageError
from cladec_cli.evaluate import evaluate
from cladec_cli.explainer import load_explainer
from cladec_cli.training import TrainSettings
from image_files import write_image_folder

SETTINGS = TrainSettings(epochs=1, batch_size=16, verbose=0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """32x32 gray PNGs of the 4 synthetic classes, with train/ and test/ splits."""
    root = tmp_path_factory.mktemp("images")
    classes = ("a", "b", "c", "d")
    write_image_folder(root / "train", classes, n_per_class=16, size=32, channels=1)
    write_image_folder(root / "test", classes, n_per_class=6, size=32, channels=1, seed=7)
    return f"folder:{root}"


@pytest.fixture(scope="module")
def explainer(trained):
    return load_explainer(trained["classifier"], trained["decoder"], trained["refae"])


def test_evaluate_never_holds_a_folder_in_memory(monkeypatch, folder, explainer):
    dataset = load_dataset(folder, image_shape=(32, 32, 1))
    assert not dataset.train.in_memory and not dataset.test.in_memory

    def refuse(split):
        raise AssertionError("a split streaming from disk was read into memory whole")
    monkeypatch.setattr(Split, "arrays", refuse)
    result = evaluate(explainer, dataset, SETTINGS)
    assert set(result["acc_eval"]) == {"cladec", "refae", "difference"}
    assert result["test_images"] == 24


@pytest.fixture(scope="module")
def in_memory(tmp_path_factory, folder):
    """The folder's images, held in memory."""
    streamed = load_dataset(folder, image_shape=(32, 32, 1))
    (x_train, y_train), (x_test, y_test) = streamed.train.arrays(), streamed.test.arrays()
    path = tmp_path_factory.mktemp("held") / "same.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    dataset = load_dataset(f"npz:{path}")
    assert dataset.train.in_memory
    return dataset


def test_streamed_and_in_memory_data_give_the_same_numbers(folder, in_memory, explainer):
    streamed = load_dataset(folder, image_shape=(32, 32, 1))
    a, b = evaluate(explainer, streamed, SETTINGS), evaluate(explainer, in_memory, SETTINGS)
    assert a["classifier_test_accuracy"] == b["classifier_test_accuracy"]
    for group in ("rec_loss", "train_rec_loss", "agreement", "acc_eval"):
        for method in ("cladec", "refae"):
            assert a[group][method] == pytest.approx(b[group][method], rel=1e-5), (group, method)


def test_methods_measured_one_at_a_time_give_the_numbers_of_methods_measured_together(monkeypatch, in_memory,
                                                                                   explainer):
    together = evaluate(explainer, in_memory, SETTINGS)
    trained = []
    monkeypatch.setattr(metrics, "fit", lambda model, *args, **kwargs: trained.append(model.name) or
                        training.fit(model, *args, **kwargs))
    monkeypatch.setattr(evaluate_module, "HELD_BYTES", 1)
    one_at_a_time = evaluate(explainer, in_memory, SETTINGS)
    assert len(trained) == 2
    for group in ("rec_loss", "train_rec_loss", "agreement", "acc_eval"):
        assert one_at_a_time[group] == pytest.approx(together[group], rel=1e-6), group


def test_images_fitted_batch_by_batch_are_never_held_fitted_and_give_the_numbers_of_held_ones(
        monkeypatch, in_memory, explainer):
    held = evaluate(explainer, in_memory, SETTINGS)
    batched = load_dataset(in_memory.name, image_shape=(32, 32, 1), hold_bytes=0)
    assert batched.train.fitted_per_batch and batched.test.fitted_per_batch

    def refuse(split):
        raise AssertionError("a split fitted batch by batch was fitted whole")
    monkeypatch.setattr(Split, "arrays", refuse)
    result = evaluate(explainer, batched, SETTINGS)
    assert result["classifier_test_accuracy"] == held["classifier_test_accuracy"]
    for group in ("rec_loss", "train_rec_loss", "agreement", "acc_eval"):
        for method in ("cladec", "refae"):
            assert result[group][method] == pytest.approx(held[group][method], rel=1e-5), (group, method)


def test_reconstructions_too_large_to_hold_are_measured_batch_by_batch(monkeypatch, in_memory, explainer):
    held = evaluate(explainer, in_memory, SETTINGS)

    def refuse(*args):
        raise AssertionError("reconstructions above the hold limit were held")
    monkeypatch.setattr(evaluate_module, "reconstructed", refuse)
    monkeypatch.setattr(evaluate_module.memory, "hold_limit", lambda: 1)
    streamed = evaluate(explainer, in_memory, SETTINGS)
    for group in ("rec_loss", "train_rec_loss", "agreement", "acc_eval"):
        assert streamed[group] == pytest.approx(held[group], rel=1e-5), group
    assert (held["eval_settings"]["reconstructions"], streamed["eval_settings"]["reconstructions"]) == (
        "held", "made batch by batch")


def test_statistics_from_reconstructions_too_large_to_hold_are_refused_before_any_work(monkeypatch, in_memory,
                                                                                      explainer):
    def refuse(*args, **kwargs):
        raise AssertionError("worked before refusing")
    monkeypatch.setattr(metrics, "fit", refuse)
    monkeypatch.setattr(evaluate_module, "split_measures", refuse)
    monkeypatch.setattr(evaluate_module.memory, "hold_limit", lambda: 10 ** 5)  # under the 0.6 MB they take
    with pytest.raises(UsageError, match="`eval_bn_statistics` data: BatchNorm statistics from data need the "
                                         "reconstructions held in memory, 0.0 GB for each method, more than the "
                                         "0.0 GB that may be held here \\(half the memory available\\); use a "
                                         "smaller `limit`"):
        evaluate(explainer, in_memory, SETTINGS, eval_bn_statistics="data")
