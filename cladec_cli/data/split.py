"""A dataset split held in memory or streamed from image files, served in batches to any Keras backend."""

import math
from dataclasses import dataclass, field

import keras
import numpy as np

from cladec_cli import runtime
from cladec_cli.data.feed import (ArrayFeed, EpochOrder, images_and_labels, images_only, tf_epoch_indices,
                                  without_autotune)
from cladec_cli.data.preprocess import BatchFitter, convert_channels, fit_images
from cladec_cli.data.readers import check_image_files


def decode_image_file(path, image_shape, resize="bilinear"):
    """Read one image file into a float32 H x W x C tensor in [0, 1] of `image_shape` (TensorFlow).

    Every file is decoded to RGB first and then converted like an image array (`convert_channels`),
    so a file and the same picture given as an array become the same input.
    """
    import tensorflow as tf

    raw = tf.io.read_file(path)
    image = tf.io.decode_image(raw, channels=3, expand_animations=False)
    image = convert_channels(tf.cast(image, tf.float32) / 255.0, image_shape[2])
    height, width = image_shape[:2]
    if resize == "pad":
        image = tf.image.resize_with_crop_or_pad(image, height, width)
    else:
        image = tf.image.resize(image, (height, width), method=resize)
    return tf.ensure_shape(image, image_shape)


def read_image_file(path, image_shape, resize="bilinear"):
    """Read one image file into a float32 H x W x C array in [0, 1] of `image_shape` (Pillow)."""
    from PIL import Image

    with Image.open(path) as im:
        array = np.asarray(im.convert("RGB"))
    return fit_images(array[None], image_shape, resize, scale=255.0)[0]


class FileFeed(keras.utils.PyDataset):
    """Batches decoded from image files with Pillow, in the same epoch order as `ArrayFeed`."""

    def __init__(self, split, batch_size, arrange, shuffle=False, seed=0, workers=4):
        super().__init__(workers=workers)
        self.split, self.batch_size, self.arrange = split, int(batch_size), arrange
        self.order = EpochOrder(len(split), shuffle, seed)
        self.refresh()

    def refresh(self):
        self._order = self.order.current()

    def __len__(self):
        return math.ceil(len(self.split) / self.batch_size)

    def __getitem__(self, index):
        chosen = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        shape, resize = tuple(self.split.image_shape), self.split.resize
        images = np.stack([read_image_file(p, shape, resize) for p in self.split.paths[chosen]])
        return self.arrange(images, self.split.labels[chosen])

    def on_epoch_end(self):
        self.order.epoch += 1
        self.refresh()


def _tf_file_dataset(split, batch_size, arrange, shuffle, seed):
    """A tf.data pipeline decoding image files in parallel, in the same epoch order as `ArrayFeed`."""
    import tensorflow as tf

    order = EpochOrder(len(split), shuffle, seed)
    indices = tf_epoch_indices(order)
    paths, labels = tf.constant(split.paths.astype(str)), tf.constant(split.labels)
    shape, resize = tuple(split.image_shape), split.resize
    ds = indices.unbatch().map(lambda i: (decode_image_file(tf.gather(paths, i), shape, resize), tf.gather(labels, i)),
                               num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size).map(arrange).apply(tf.data.experimental.assert_cardinality(
        math.ceil(len(split) / batch_size)))
    ds = without_autotune(ds.prefetch(tf.data.AUTOTUNE))
    ds.order = order
    return ds


@dataclass
class Split:
    """Integer labels plus images: an in-memory array fitted to `image_shape`, file paths decoded on the
    fly, or `unfitted` images (N x h x w x c, as the dataset gives them, non-uint8 ones divided by
    `scale`) held in memory and fitted batch by batch, for images that would take too much memory
    fitted whole. Only the first is `in_memory`: the others are read batch by batch, like a stream."""

    labels: np.ndarray
    image_shape: tuple
    images: np.ndarray = None
    paths: np.ndarray = None
    resize: str = "bilinear"
    files_checked: bool = field(default=False, repr=False, compare=False)
    unfitted: np.ndarray = field(default=None, repr=False)
    scale: float = 1.0

    def __len__(self):
        return len(self.labels)

    @property
    def in_memory(self):
        return self.images is not None

    @property
    def fitted_per_batch(self):
        return self.unfitted is not None

    def how_read(self):
        """How a split that is not `in_memory` is read, in words, for messages."""
        if self.fitted_per_batch:
            return "its images are fitted to the model batch by batch, being too large to hold fitted"
        return "it streams image files from disk"

    def fitter(self):
        """The `BatchFitter` of an `unfitted` split."""
        return BatchFitter(self.image_shape, self.resize, self.scale)

    def subset(self, indices):
        """A Split with only the items at `indices`."""
        indices = np.asarray(indices, dtype=np.int64)
        return Split(
            labels=self.labels[indices],
            image_shape=self.image_shape,
            images=None if self.images is None else self.images[indices],
            paths=None if self.paths is None else self.paths[indices],
            resize=self.resize,
            unfitted=None if self.unfitted is None else self.unfitted[indices],
            scale=self.scale,
        )

    def dataset(self, batch_size, shuffle=False, seed=0, labels=True, arrange=None):
        """Batches for `fit`/`predict`: (images, labels), images alone, or `arrange(images, labels)`.

        Shuffled per epoch by (seed, epoch) when asked. Files stream through tf.data under TensorFlow
        and through Pillow under the other backends; a tf.data pipeline serves the epoch last set by
        `set_start_epoch` (as `fit` does through its `FeedEpoch` callback) and does not advance by itself.
        """
        arrange = arrange or (images_and_labels if labels else images_only)
        if self.in_memory:
            return ArrayFeed(self.images, self.labels, batch_size, arrange, shuffle, seed)
        if self.fitted_per_batch:
            return ArrayFeed(self.unfitted, self.labels, batch_size, arrange, shuffle, seed, prepare=self.fitter())
        if not self.files_checked:  # before decoding, which names no file when one fails
            check_image_files(self.paths)
            self.files_checked = True
        if runtime.has_tensorflow():
            return _tf_file_dataset(self, batch_size, arrange, shuffle, seed)
        return FileFeed(self, batch_size, arrange, shuffle, seed)

    def batches(self, batch_size):
        """Image batches as NumPy arrays, in order; files are decoded, and unfitted images fitted, batch by
        batch."""
        if self.in_memory:
            for start in range(0, len(self), batch_size):
                yield self.images[start:start + batch_size]
            return
        feed = self.dataset(batch_size, labels=False)
        if isinstance(feed, keras.utils.PyDataset):
            for index in range(len(feed)):
                yield feed[index][0]
        else:
            for (images,) in feed.as_numpy_iterator():
                yield images

    def arrays(self):
        """(images, labels) as NumPy arrays; decodes files, or fits unfitted images, batch by batch."""
        if self.in_memory:
            return self.images, self.labels
        parts = list(self.batches(256))
        images = np.concatenate(parts) if parts else np.zeros((0,) + tuple(self.image_shape), np.float32)
        return images, self.labels
