"""A dataset split held in memory or streamed from image files, served through tf.data."""

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from cladec_cli.data.preprocess import convert_channels, resize_images

AUTOTUNE = tf.data.AUTOTUNE


def decode_image_file(path, image_shape, resize="bilinear"):
    """Read one image file into a float32 H x W x C tensor in [0, 1] of `image_shape`.

    Every file is decoded to RGB first and then converted like an image array (`convert_channels`),
    so a file and the same picture given as an array become the same input.
    """
    raw = tf.io.read_file(path)
    image = tf.io.decode_image(raw, channels=3, expand_animations=False)
    image = convert_channels(tf.cast(image, tf.float32) / 255.0, image_shape[2])
    image = resize_images(image[None], image_shape[:2], resize)[0]
    return tf.ensure_shape(image, image_shape)


@dataclass
class Split:
    """Integer labels plus images, either as an in-memory array or as file paths decoded on the fly."""

    labels: np.ndarray
    image_shape: tuple
    images: np.ndarray = None
    paths: np.ndarray = None
    resize: str = "bilinear"

    def __len__(self):
        return len(self.labels)

    @property
    def in_memory(self):
        return self.images is not None

    def subset(self, indices):
        """A Split with only the items at `indices`."""
        indices = np.asarray(indices, dtype=np.int64)
        return Split(
            labels=self.labels[indices],
            image_shape=self.image_shape,
            images=None if self.images is None else self.images[indices],
            paths=None if self.paths is None else self.paths[indices],
            resize=self.resize,
        )

    def dataset(self, batch_size, shuffle=False, seed=0, labels=True):
        """Batches of (images, labels), or of images alone, shuffled per epoch when asked, prefetched."""
        source = self.images if self.in_memory else self.paths.astype(str)
        ds = tf.data.Dataset.from_tensor_slices((source, self.labels))
        if shuffle:
            ds = ds.shuffle(len(self), seed=seed, reshuffle_each_iteration=True)
        if not self.in_memory:
            shape, resize = tuple(self.image_shape), self.resize
            ds = ds.map(lambda path, y: (decode_image_file(path, shape, resize), y),
                        num_parallel_calls=AUTOTUNE, deterministic=True)
        ds = ds.batch(batch_size)
        if not labels:
            ds = ds.map(lambda xb, yb: xb)
        return ds.prefetch(AUTOTUNE)

    def arrays(self):
        """(images, labels) as NumPy arrays; decodes files when the split streams from disk."""
        if self.in_memory:
            return self.images, self.labels
        images = np.concatenate([b.numpy() for b in self.dataset(256, labels=False)]) if len(self) else \
            np.zeros((0,) + tuple(self.image_shape), np.float32)
        return images, self.labels
