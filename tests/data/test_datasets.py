"""load_dataset: IDX folders, npz files, preprocessing, stratified limits and batch feeds."""

import keras
import numpy as np
import pytest

from cladec_cli.data import sources
from cladec_cli.data.datasets import fitted_bytes, fitting_note, holding_note, load_dataset
from cladec_cli.errors import DataError, UsageError
from conftest import N_CLASSES, synthetic_images, write_idx_dataset, write_npz
from image_files import write_image_folder


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    """A miniature Fashion-MNIST: 200 train / 60 test 28x28 images, 10 balanced classes."""
    return write_idx_dataset(tmp_path_factory.mktemp("fmnist"))


@pytest.fixture
def no_download(monkeypatch):
    """Fail loudly if anything tries Keras' downloader."""
    def refuse(name):
        raise AssertionError(f"tried to download {name}")
    monkeypatch.setattr(sources, "keras_download", refuse)


def test_fashion_mnist_from_idx_dir(idx_dir, no_download):
    data = load_dataset("fashion_mnist", data_dir=idx_dir)
    assert data.image_shape == (32, 32, 1)
    assert data.n_classes == 10
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"
    assert data.origin == str(idx_dir)
    assert data.resize == "bilinear"
    for split, n, seed in ((data.train, 200, 0), (data.test, 60, 1)):
        assert split.images.shape == (n, 32, 32, 1)
        assert split.images.dtype == np.float32
        assert 0.0 <= split.images.min() and split.images.max() <= 1.0
        assert split.images.max() > 0.5  # the bright squares survived scaling
        _, labels = synthetic_images(n, size=28, n_classes=10, seed=seed)
        np.testing.assert_array_equal(split.labels, labels)
    assert data.provenance()["image_shape"] == [32, 32, 1]


def test_raw_idx_files(tmp_path, no_download):
    folder = write_idx_dataset(tmp_path / "raw", n_train=20, n_test=10, compress=False)
    data = load_dataset("fashion_mnist", data_dir=folder)
    assert len(data.train) == 20 and len(data.test) == 10


def test_dataset_named_sub_folder(tmp_path, no_download):
    write_idx_dataset(tmp_path / "fashion-mnist", n_train=20, n_test=10)
    data = load_dataset("fashion_mnist", data_dir=tmp_path)
    assert len(data.train) == 20


def test_missing_data_dir(tmp_path, no_download):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("fashion_mnist", data_dir=tmp_path / "nowhere")


def test_data_dir_without_files_never_falls_back(tmp_path, no_download):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")  # only one of the four files
    with pytest.raises(DataError) as info:
        load_dataset("fashion_mnist", data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    assert "t10k-labels-idx1-ubyte" in message


def test_broken_idx_in_data_dir(tmp_path, no_download):
    folder = write_idx_dataset(tmp_path, n_train=20, n_test=10)
    path = folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError):
        load_dataset("fashion_mnist", data_dir=folder)


@pytest.mark.parametrize("name", ["cifar10", "npz:", "folder:", "imagenet:x"])
def test_unknown_dataset_name(name):
    with pytest.raises(UsageError, match="unknown dataset"):
        load_dataset(name)


def test_unknown_resize_mode(idx_dir):
    with pytest.raises(UsageError, match="resize"):
        load_dataset("fashion_mnist", data_dir=idx_dir, resize="bicubic")


def test_limit_is_class_stratified(idx_dir):
    full = load_dataset("fashion_mnist", data_dir=idx_dir, resize="pad")
    data = load_dataset("fashion_mnist", data_dir=idx_dir, resize="pad", limit=50)
    assert len(data.train) == 50 and len(data.test) == 50
    for split in (data.train, data.test):
        counts = np.bincount(split.labels, minlength=10)
        assert counts.max() - counts.min() <= 1
        assert counts.sum() == 50
    # The subset holds original images with their own labels.
    for image, label in zip(data.train.images, data.train.labels):
        matches = np.flatnonzero(np.all(full.train.images == image, axis=(1, 2, 3)))
        assert len(matches) >= 1 and label in full.train.labels[matches]
    assert data.provenance()["limit"] == 50
    assert full.provenance()["limit"] == 0


def test_limit_on_unbalanced_classes(tmp_path):
    x, _ = synthetic_images(100)
    y = np.array([0] * 70 + [1] * 20 + [2] * 10)
    np.savez(tmp_path / "u.npz", x_train=x, y_train=y, x_test=x[:10], y_test=np.arange(10) % 3)
    data = load_dataset(f"npz:{tmp_path / 'u.npz'}", limit=20)
    np.testing.assert_array_equal(np.bincount(data.train.labels), [14, 4, 2])


def test_limit_is_repeatable_and_chosen_by_the_split_seed(idx_dir):
    a = load_dataset("fashion_mnist", data_dir=idx_dir, limit=30, split_seed=1)
    b = load_dataset("fashion_mnist", data_dir=idx_dir, limit=30, split_seed=1)
    other = load_dataset("fashion_mnist", data_dir=idx_dir, limit=30, split_seed=2)
    np.testing.assert_array_equal(a.train.images, b.train.images)
    assert not np.array_equal(a.train.images, other.train.images)
    assert (a.provenance()["split_seed"], other.provenance()["split_seed"]) == (1, 2)


@pytest.mark.parametrize("mode", ["bilinear", "nearest", "pad"])
def test_resize_modes_give_32x32(idx_dir, mode):
    data = load_dataset("fashion_mnist", data_dir=idx_dir, resize=mode, limit=20)
    assert data.train.images.shape[1:] == (32, 32, 1)
    assert data.train.images.dtype == np.float32
    assert data.resize == mode and data.provenance()["resize"] == mode


def test_pad_centres_content_with_zero_border(idx_dir):
    data = load_dataset("fashion_mnist", data_dir=idx_dir, resize="pad")
    raw, _ = synthetic_images(200, size=28, n_classes=10, seed=0)
    x = data.train.images
    np.testing.assert_allclose(x[:, 2:30, 2:30, 0], raw[..., 0] / 255.0, atol=1e-6)
    border = np.concatenate([x[:, :2].ravel(), x[:, 30:].ravel(), x[:, :, :2].ravel(), x[:, :, 30:].ravel()])
    assert np.all(border == 0)


def test_nearest_keeps_pixel_values_bilinear_blends(idx_dir):
    raw, _ = synthetic_images(200, size=28, n_classes=10, seed=0)
    allowed = np.unique(raw.astype(np.float32) / 255.0)
    nearest = load_dataset("fashion_mnist", data_dir=idx_dir, resize="nearest", limit=10).train.images
    bilinear = load_dataset("fashion_mnist", data_dir=idx_dir, resize="bilinear", limit=10).train.images
    assert np.all(np.isin(nearest, allowed))
    assert not np.all(np.isin(bilinear, allowed))
    assert not np.allclose(nearest, bilinear)


def test_split_batches(idx_dir):
    data = load_dataset("fashion_mnist", data_dir=idx_dir)
    batches = list(data.train.dataset(32))
    assert len(batches) == 7
    for xb, yb in batches[:-1]:
        assert tuple(xb.shape) == (32, 32, 32, 1) and tuple(yb.shape) == (32,)
    assert tuple(batches[-1][0].shape) == (8, 32, 32, 1)
    np.testing.assert_array_equal(np.concatenate([np.asarray(y) for _, y in batches]), data.train.labels)
    images_only = list(data.test.dataset(32, labels=False))
    assert [tuple(b.shape) for (b,) in images_only] == [(32, 32, 32, 1), (28, 32, 32, 1)]
    shuffled = np.concatenate([np.asarray(y) for _, y in data.train.dataset(32, shuffle=True, seed=0)])
    assert sorted(shuffled) == sorted(data.train.labels) and list(shuffled) != list(data.train.labels)


def test_epoch_order_depends_on_seed_and_epoch_only():
    from cladec_cli.data.feed import ArrayFeed, epoch_order

    assert list(epoch_order(50, 3, 7)) == list(epoch_order(50, 3, 7))
    assert list(epoch_order(50, 3, 7)) != list(epoch_order(50, 3, 8))
    assert list(epoch_order(50, 3, 7)) != list(epoch_order(50, 4, 7))
    x = np.arange(50)
    feed = ArrayFeed(x, x, 10, shuffle=True, seed=3)
    first = np.concatenate([feed[i][0] for i in range(len(feed))])
    feed.on_epoch_end()
    second = np.concatenate([feed[i][0] for i in range(len(feed))])
    resumed = ArrayFeed(x, x, 10, shuffle=True, seed=3, start_epoch=1)
    assert list(first) == list(epoch_order(50, 3, 0)) and list(second) == list(epoch_order(50, 3, 1))
    assert list(np.concatenate([resumed[i][0] for i in range(len(resumed))])) == list(second)


def test_npz_dataset(tmp_path):
    path = write_npz(tmp_path / "tiny.npz", n_train=40, n_test=12)
    data = load_dataset(f"npz:{path}")
    x_train, y_train = synthetic_images(40)
    assert data.image_shape == (32, 32, 1)
    assert data.n_classes == N_CLASSES
    assert data.class_names == ["top-left", "top-right", "bottom-left", "bottom-right"]
    np.testing.assert_allclose(data.train.images, x_train.astype(np.float32) / 255.0, atol=1e-6)
    np.testing.assert_array_equal(data.train.labels, y_train)
    assert len(data.test) == 12
    assert data.provenance()["dataset"] == f"npz:{path}"


def test_npz_dataset_with_image_shape(tmp_path):
    path = write_npz(tmp_path / "rgb.npz", n_train=8, n_test=4, size=16, channels=3)
    data = load_dataset(f"npz:{path}", image_shape=(32, 32, 1))
    assert data.train.images.shape == (8, 32, 32, 1)
    assert 0.0 <= data.train.images.min() and data.train.images.max() <= 1.0


def test_fitting_note_says_how_images_change_to_fit_a_model(tmp_path, idx_dir):
    rgb = write_npz(tmp_path / "rgb.npz", n_train=8, n_test=4, size=16, channels=3)
    assert fitting_note(load_dataset(f"npz:{rgb}", image_shape=(32, 32, 1))) == (
        f"note: the npz:{rgb} images (16x16x3) are resized (bilinear) from 16x16 to 32x32 and turned to gray "
        f"(luma) to fit the model's input 32x32x1")
    assert fitting_note(load_dataset(f"npz:{rgb}", image_shape=(32, 32, 3), resize="pad")) == (
        f"note: the npz:{rgb} images (16x16x3) are padded from 16x16 to 32x32 to fit the model's input 32x32x3")
    fashion = load_dataset("fashion_mnist", data_dir=idx_dir, image_shape=(28, 28, 3), resize="nearest")
    assert fitting_note(fashion) == ("note: the fashion_mnist images (28x28x1) are gray copied to 3 channels to "
                                     "fit the model's input 28x28x3")
    folder = write_image_folder(tmp_path / "imgs", size=16, channels=3)
    assert fitting_note(load_dataset(f"folder:{folder}", image_shape=(24, 24, 3))) == (
        f"note: the folder:{folder} image files (the first is 16x16x3) are resized (bilinear) from 16x16 to 24x24 "
        f"to fit the model's input 24x24x3")


def test_no_fitting_note_where_the_images_keep_their_shape_or_take_the_standard_size(tmp_path, idx_dir):
    rgb = write_npz(tmp_path / "rgb.npz", n_train=8, n_test=4, size=16, channels=3)
    assert fitting_note(load_dataset(f"npz:{rgb}")) is None
    assert fitting_note(load_dataset(f"npz:{rgb}", image_shape=(16, 16, 3))) is None
    for shape in (None, (32, 32, 1), (28, 28, 1)):  # 32x32: the paper's size for Fashion-MNIST
        assert fitting_note(load_dataset("fashion_mnist", data_dir=idx_dir, image_shape=shape)) is None


def test_missing_npz(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"npz:{tmp_path / 'absent.npz'}")


def test_keras_download_progress_stays_off_stdout(monkeypatch, capsys):
    import keras

    def load_data():
        print("Downloading data from https://example.org/mnist.npz")
        return (np.zeros((1, 28, 28), np.uint8), np.zeros(1)), (np.zeros((1, 28, 28), np.uint8), np.zeros(1))

    monkeypatch.setattr(keras.datasets.mnist, "load_data", load_data)
    (x_train, _), _ = sources.keras_download("mnist")
    captured = capsys.readouterr()
    assert x_train.shape == (1, 28, 28)
    assert captured.out == "" and "Downloading data from" in captured.err


def _feed_batches(feed):
    """Every batch a feed serves, as NumPy: through tf.data under TensorFlow (as `fit` reads it), else as
    a PyDataset."""
    if keras.backend.backend() == "tensorflow":
        return [tuple(map(np.asarray, batch)) for batch in feed.tf_dataset().as_numpy_iterator()]
    return [tuple(map(np.asarray, feed[i])) for i in range(len(feed))]


@pytest.mark.parametrize("mode", ["bilinear", "nearest", "pad"])
@pytest.mark.parametrize("as_floats", [False, True])
def test_images_fitted_batch_by_batch_hold_the_values_of_images_held_fitted(tmp_path, mode, as_floats):
    x_train, y_train = synthetic_images(40, size=20, channels=3)
    x_test, y_test = synthetic_images(12, size=20, channels=3, seed=1)
    if as_floats:  # floats in [0, 255]: divided by the scale both splits share
        x_train, x_test = x_train.astype(np.float64) * 0.9, x_test.astype(np.float64)
    path = tmp_path / "rgb.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    shape = (28, 28, 1)
    held = load_dataset(f"npz:{path}", image_shape=shape, resize=mode)
    batched = load_dataset(f"npz:{path}", image_shape=shape, resize=mode, hold_bytes=0)
    assert held.train.in_memory and not held.train.fitted_per_batch
    assert batched.train.fitted_per_batch and not batched.train.in_memory and batched.test.fitted_per_batch
    assert batched.train.unfitted.shape == (40, 20, 20, 3)  # as they come, not at the model's size
    assert batched.image_shape == shape and batched.provenance() == held.provenance()
    for a, b in ((held.train, batched.train), (held.test, batched.test)):
        np.testing.assert_array_equal(b.arrays()[0], a.images)
        np.testing.assert_array_equal(np.concatenate(list(b.batches(7))), a.images)
        np.testing.assert_array_equal(b.subset([5, 1, 3]).arrays()[0], a.images[[5, 1, 3]])
        for want, got in zip(_feed_batches(a.dataset(8, shuffle=True, seed=3)),
                             _feed_batches(b.dataset(8, shuffle=True, seed=3)), strict=True):
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
        # Chunks of batches, which under JAX on a GPU are gathered on the device.
        on_device = keras.backend.backend() == "jax"
        held_chunks, batched_chunks = (s.dataset(8, shuffle=True, seed=3).in_chunks(2, on_device) for s in (a, b))
        for index in range(len(held_chunks)):
            np.testing.assert_array_equal(np.asarray(batched_chunks[index][0]), np.asarray(held_chunks[index][0]))


def test_images_that_cannot_be_fitted_are_refused_when_loaded_also_where_they_are_fitted_batch_by_batch(tmp_path):
    path = write_npz(tmp_path / "big.npz", n_train=8, n_test=4, size=40)
    for hold_bytes in (None, 0):
        with pytest.raises(DataError, match="pad cannot shrink 40x40 images to 32x32"):
            load_dataset(f"npz:{path}", image_shape=(32, 32, 1), resize="pad", hold_bytes=hold_bytes)


def test_images_are_held_fitted_up_to_the_hold_limit(tmp_path):
    path = write_npz(tmp_path / "tiny.npz", n_train=40, n_test=12, size=16)
    need = fitted_bytes(52, (32, 32, 1))
    assert need == 52 * 32 * 32 * 4
    shape = (32, 32, 1)
    assert load_dataset(f"npz:{path}", image_shape=shape, hold_bytes=need).train.in_memory
    assert load_dataset(f"npz:{path}", image_shape=shape, hold_bytes=need - 1).train.fitted_per_batch
    limited = load_dataset(f"npz:{path}", image_shape=shape, hold_bytes=need - 1, limit=20)  # the subset is held
    assert limited.train.in_memory and len(limited.train) + len(limited.test) == 32


def test_holding_note_says_that_images_are_fitted_batch_by_batch(tmp_path):
    path = write_npz(tmp_path / "tiny.npz", n_train=40, n_test=12, size=16)
    assert holding_note(load_dataset(f"npz:{path}")) is None
    line = holding_note(load_dataset(f"npz:{path}", image_shape=(224, 224, 3), hold_bytes=10 ** 6))
    assert line.startswith(f"note: the 52 npz:{path} images would take 0.0 GB fitted to 224x224x3")
    assert "more than the 0.0 GB that data held whole may take here" in line
    assert line.endswith("so they are held as they come and fitted batch by batch")
