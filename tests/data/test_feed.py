"""Batches of in-memory arrays: the same under tf.data as from the feed itself, and large arrays not copied."""

import keras
import numpy as np
import pytest

from cladec_cli import runtime
from cladec_cli.data import feed as feed_module
from cladec_cli.data.feed import ArrayFeed, set_start_epoch

tensorflow_only = pytest.mark.skipif(not runtime.has_tensorflow(), reason="tf.data is TensorFlow's")


def _resident_bytes():
    """This process's resident memory now (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@tensorflow_only
@pytest.mark.parametrize("copy_limit", [1 << 30, 0], ids=["copied-into-tensors", "gathered-from-the-arrays"])
def test_tf_dataset_serves_the_feeds_own_batches_for_several_inputs_and_dtypes(monkeypatch, copy_limit):
    monkeypatch.setattr(feed_module, "TENSOR_COPY_LIMIT", copy_limit)
    n = 37
    codes = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    images = (np.arange(n * 4, dtype=np.uint8) % 251).reshape(n, 2, 2, 1)
    labels = np.arange(n, dtype=np.int64) * 7

    def arrange(inputs, labels):
        return inputs[0], {"image": inputs[1], "label": labels}

    feed = ArrayFeed((codes, images), labels, 8, arrange, shuffle=True, seed=5)
    data = feed.tf_dataset()
    for epoch in (0, 2):
        set_start_epoch(data, epoch)
        set_start_epoch(feed, epoch)
        served = list(data.as_numpy_iterator())
        assert len(served) == len(feed) == 5
        for index, (x, targets) in enumerate(served):
            want_x, want_targets = feed[index]
            np.testing.assert_array_equal(x, want_x)
            assert x.dtype == np.float32 and targets["image"].dtype == np.uint8
            np.testing.assert_array_equal(targets["image"], want_targets["image"])
            np.testing.assert_array_equal(targets["label"], want_targets["label"])
    assert data.element_spec[0].shape.as_list() == [None, 3]


@tensorflow_only
def test_serving_and_predicting_a_large_array_under_tensorflow_does_not_copy_it(monkeypatch):
    from cladec_cli.training import predict

    monkeypatch.setattr(feed_module, "TENSOR_COPY_LIMIT", 1 << 26)

    images = np.ones((2 ** 18, 16, 16, 1), np.float32)  # 256 MiB, in small items: batches of a few MiB
    inputs = keras.Input(images.shape[1:])
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
    predict(model, images[:6000], batch_size=4096)  # TensorFlow's and Keras' own first-use memory, before measuring
    before = _resident_bytes()
    data = ArrayFeed(images, np.zeros(len(images), np.int8), 256).tf_dataset()
    for _ in data.take(2):
        pass
    np.testing.assert_allclose(predict(model, images, batch_size=4096), 1.0)
    # Turning the array into tensors would take at least its own size again.
    assert _resident_bytes() - before < images.nbytes // 4


@tensorflow_only
def test_tf_pipelines_of_arrays_and_of_files_run_without_autotuning(tmp_path):
    from image_files import write_image_folder

    from cladec_cli.data.datasets import load_dataset

    arrays = ArrayFeed(np.zeros((10, 2), np.float32), np.arange(10), 4).tf_dataset()
    files = load_dataset(f"folder:{write_image_folder(tmp_path / 'images', n_per_class=4)}", test_fraction=0.25)
    assert not files.train.in_memory
    for data in (arrays, files.train.dataset(4, shuffle=True)):
        assert data.options().autotune.enabled is False
        assert sum(len(labels) for _, labels in data) == len(data.order.current())
