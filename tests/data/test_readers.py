"""Readers for file datasets: TinyImageNet's folder layout, MNIST files in --data-dir, `folder:` and `npz:`."""

from pathlib import Path

import numpy as np
import pytest

from cladec_cli.data import sources
from cladec_cli.data.datasets import load_dataset
from cladec_cli.errors import DataError
from conftest import synthetic_images, write_idx_dataset
from image_files import WNIDS, bright_quadrant, save_image, write_image_folder, write_tiny_imagenet


@pytest.fixture(scope="module")
def tiny_imagenet(tmp_path_factory):
    return write_tiny_imagenet(tmp_path_factory.mktemp("tin") / "tiny-imagenet-200")


@pytest.fixture
def no_download(monkeypatch):
    def refuse(name):
        raise AssertionError(f"tried to download {name}")
    monkeypatch.setattr(sources, "keras_download", refuse)


def assert_labels_match_pixels(split):
    """Every decoded image shows the bright square of its own label."""
    images, labels = split.arrays()
    assert len(images) == len(labels) > 0
    assert [bright_quadrant(image) for image in images] == labels.tolist()


# TinyImageNet ---------------------------------------------------------------------------------------

def test_tiny_imagenet_layout(tiny_imagenet):
    data = load_dataset("tiny_imagenet", data_dir=tiny_imagenet)
    assert data.image_shape == (64, 64, 3)
    assert data.n_classes == 3
    # words.txt gives the first synonym; the entry for a wnid that is not in wnids.txt is ignored.
    assert data.class_names == ["goldfish", "European fire salamander", "bullfrog"]
    assert not data.train.in_memory and not data.test.in_memory  # streamed from disk
    assert len(data.train) == 24 and len(data.test) == 12
    np.testing.assert_array_equal(np.bincount(data.train.labels), [8, 8, 8])
    np.testing.assert_array_equal(data.test.labels, [0, 1, 2] * 4)  # the order of val_annotations.txt
    # Only the images/ sub-folders are read, not the bounding-box files beside them.
    assert all("/images/" in p for p in data.train.paths)
    x, y = next(iter(data.train.dataset(5)))
    assert tuple(x.shape) == (5, 64, 64, 3) and x.dtype.name == "float32"
    assert 0.0 <= float(np.min(x)) and float(np.max(x)) <= 1.0 and float(np.max(x)) > 0.7
    assert_labels_match_pixels(data.train)
    assert_labels_match_pixels(data.test)
    assert data.provenance()["image_shape"] == [64, 64, 3]


def test_tiny_imagenet_in_named_sub_folder_without_words(tmp_path):
    write_tiny_imagenet(tmp_path / "tiny-imagenet-200", wnids=WNIDS[:2], n_train=2, n_val=1, words=False)
    data = load_dataset("tiny_imagenet", data_dir=tmp_path)
    assert data.class_names == list(WNIDS[:2])
    assert len(data.train) == 4 and len(data.test) == 2


def test_tiny_imagenet_limit_and_other_shape(tiny_imagenet):
    data = load_dataset("tiny_imagenet", data_dir=tiny_imagenet, limit=6, image_shape=(32, 32, 1))
    assert len(data.train) == 6 and len(data.test) == 6
    np.testing.assert_array_equal(np.bincount(data.train.labels), [2, 2, 2])
    images, _ = data.train.arrays()
    assert images.shape == (6, 32, 32, 1)


def test_tiny_imagenet_missing(tmp_path):
    with pytest.raises(DataError, match="no TinyImageNet found"):
        load_dataset("tiny_imagenet", data_dir=tmp_path)


def test_tiny_imagenet_without_val_annotations(tmp_path):
    root = write_tiny_imagenet(tmp_path, wnids=WNIDS[:2], n_train=1, n_val=1)
    (root / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DataError, match="val_annotations.txt"):
        load_dataset("tiny_imagenet", data_dir=root)


# MNIST from --data-dir ------------------------------------------------------------------------------

def test_mnist_from_idx_files(tmp_path, no_download):
    folder = write_idx_dataset(tmp_path / "mnist", n_train=30, n_test=20)
    data = load_dataset("mnist", data_dir=tmp_path)  # found in the dataset-named sub-folder
    assert data.image_shape == (32, 32, 1)
    assert data.class_names == [str(i) for i in range(10)]
    assert data.origin == str(folder)
    assert len(data.train) == 30 and len(data.test) == 20
    np.testing.assert_array_equal(data.test.labels, synthetic_images(20, size=28, n_classes=10, seed=1)[1])


def test_mnist_npz_is_preferred_in_data_dir(tmp_path, no_download):
    write_idx_dataset(tmp_path, n_train=30, n_test=20)
    x, y = synthetic_images(12, size=28, n_classes=10)
    np.savez(tmp_path / "mnist.npz", x_train=x[..., 0], y_train=y, x_test=x[:5, ..., 0], y_test=y[:5])
    data = load_dataset("mnist", data_dir=tmp_path)
    assert len(data.train) == 12 and len(data.test) == 5
    assert data.image_shape == (32, 32, 1)


def test_mnist_data_dir_without_files(tmp_path, no_download):
    with pytest.raises(DataError, match="has no mnist files"):
        load_dataset("mnist", data_dir=tmp_path)


# folder: --------------------------------------------------------------------------------------------

def test_folder_with_train_and_test(tmp_path):
    write_image_folder(tmp_path / "train", n_per_class=6)
    write_image_folder(tmp_path / "test", n_per_class=2, seed=5)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    data = load_dataset(f"folder:{tmp_path}", test_fraction=0.5)  # ignored: the split exists
    assert data.class_names == ["cat", "dog", "eel"]
    assert data.image_shape == (16, 16, 3)  # the files' own size
    assert len(data.train) == 18 and len(data.test) == 6
    assert all("/train/" in p for p in data.train.paths) and all("/test/" in p for p in data.test.paths)
    assert not data.train.in_memory
    assert_labels_match_pixels(data.train)
    assert_labels_match_pixels(data.test)


@pytest.mark.parametrize("fraction, n_test_per_class", [(0.2, 2), (0.5, 5)])
def test_folder_without_split_is_stratified(tmp_path, fraction, n_test_per_class):
    write_image_folder(tmp_path, n_per_class=10, channels=1, suffix=".jpg")
    data = load_dataset(f"folder:{tmp_path}", test_fraction=fraction, split_seed=3)
    np.testing.assert_array_equal(np.bincount(data.test.labels), [n_test_per_class] * 3)
    np.testing.assert_array_equal(np.bincount(data.train.labels), [10 - n_test_per_class] * 3)
    every = sorted(str(p) for p in Path(tmp_path).rglob("*.jpg"))
    assert sorted(data.train.paths.tolist() + data.test.paths.tolist()) == every  # a partition
    assert data.image_shape == (16, 16, 1)
    assert_labels_match_pixels(data.test)
    again = load_dataset(f"folder:{tmp_path}", test_fraction=fraction, split_seed=3)
    np.testing.assert_array_equal(again.test.paths, data.test.paths)  # repeatable for a seed


def test_folder_images_of_mixed_sizes_fit_one_shape(tmp_path):
    write_image_folder(tmp_path, classes=("a", "b"), n_per_class=4, size=16)
    save_image(tmp_path / "a" / "zz_big.png", np.full((40, 24, 3), 200, np.uint8))
    data = load_dataset(f"folder:{tmp_path}", test_fraction=0.25, image_shape=(20, 20, 3))
    images, _ = data.train.arrays()
    test_images, _ = data.test.arrays()
    assert images.shape[1:] == (20, 20, 3) and test_images.shape[1:] == (20, 20, 3)
    assert len(images) + len(test_images) == 9


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset(f"folder:{tmp_path}")


def test_class_folders_without_images(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "readme.txt").write_text("no pictures here")
    with pytest.raises(DataError, match="no readable images"):
        load_dataset(f"folder:{tmp_path}")


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nowhere'}")


# npz: -----------------------------------------------------------------------------------------------

def test_npz_keeps_native_rgb_shape(tmp_path):
    x, y = synthetic_images(12, size=48, channels=3)
    np.savez(tmp_path / "rgb.npz", x_train=x, y_train=y[:, None], x_test=x[:4], y_test=y[:4, None])
    data = load_dataset(f"npz:{tmp_path / 'rgb.npz'}")
    assert data.image_shape == (48, 48, 3)
    assert data.class_names == ["0", "1", "2", "3"]  # no class_names array in the file
    assert data.train.labels.shape == (12,)  # column labels are flattened
    assert [bright_quadrant(image) for image in data.train.images] == y.tolist()


def test_npz_with_mismatched_lengths(tmp_path):
    x, y = synthetic_images(6)
    np.savez(tmp_path / "bad.npz", x_train=x, y_train=y[:5], x_test=x, y_test=y)
    with pytest.raises(DataError, match="6 images but y_train has 5"):
        load_dataset(f"npz:{tmp_path / 'bad.npz'}")
