"""Batches for Keras' `fit` and `predict` that work under every backend.

In-memory arrays are served by `ArrayFeed`, a `keras.utils.PyDataset` whose order in epoch e is a
permutation drawn from (seed, e) alone. So every backend sees the same order for the same seed, and a
run resumed at epoch e continues with exactly the batches an uninterrupted run would have seen. Under
TensorFlow, `ArrayFeed.tf_dataset` serves the same batches through tf.data, without a Python call per batch.
"""

import math

import keras
import numpy as np


def epoch_order(n, seed, epoch):
    """The shuffled order of `n` items in `epoch` for `seed`: depends on nothing else."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def images_and_labels(x, y):
    """Batch layout for classifiers: (images, labels)."""
    return x, y


def images_only(x, y):
    """Batch layout for prediction: images alone."""
    return (x,)


class EpochOrder:
    """The item order of the epoch `epoch` (set by `set_start_epoch`, or by a feed at the end of a pass)."""

    def __init__(self, n, shuffle, seed=0, start_epoch=0):
        self.n, self.shuffle, self.seed, self.epoch = int(n), shuffle, seed, int(start_epoch)

    def current(self):
        return epoch_order(self.n, self.seed, self.epoch) if self.shuffle else np.arange(self.n)


def tf_epoch_indices(order):
    """A tf.data pipeline of one element: the item order of the epoch `order` stands at when an iterator
    starts reading it. Keras makes a new iterator after each epoch's `on_epoch_begin`, where `fit` sets
    the epoch (`set_start_epoch`); the order is only read here, because Keras also makes, and throws
    away, an iterator at the end of each epoch."""
    import tensorflow as tf

    return tf.data.Dataset.from_generator(lambda: iter([order.current()]),
                                          output_signature=tf.TensorSpec((None,), tf.int64))


def without_autotune(data):
    """A tf.data pipeline with tf.data's autotuning off: its `AUTOTUNE` parallelism stays at the number of
    cores and its prefetch buffer grows as the consumer waits, as without the tuning model.

    With autotuning on, throwing an iterator away waits for the tuning thread to end, which on a 2-core
    CPU (TensorFlow 2.21) held `fit` with both cores idle for 2-4 s at the start of about every other
    epoch of a few seconds (benchmarks/autotune_stall.py)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return data.with_options(options)


def set_start_epoch(data, epoch):
    """Make a feed (or a tf.data pipeline made by `ArrayFeed.tf_dataset` or `Split.dataset`) serve epoch
    `epoch`'s order next."""
    order = getattr(data, "order", None)
    if order is not None:
        order.epoch = int(epoch)
        if hasattr(data, "refresh"):
            data.refresh()


# The largest arrays (in bytes, all of a feed's together) that `ArrayFeed.tf_dataset` copies into tensors.
TENSOR_COPY_LIMIT = 1 << 30


def _take(arrays, chosen):
    """Items `chosen` of an array, or of each array in a tuple (a model with several inputs)."""
    if isinstance(arrays, tuple):
        return tuple(a[chosen] for a in arrays)
    return arrays[chosen]


class ArrayFeed(keras.utils.PyDataset):
    """Batches of two aligned in-memory arrays (inputs and a second array such as labels or images),
    arranged by `arrange(x_batch, second_batch)` into what the model's fit or predict expects.

    With `shuffle`, epoch e is served in `epoch_order(n, seed, e)`; as a PyDataset the epoch advances by
    one at the end of each pass, starting from `start_epoch` (set it when a run resumes). `tf_dataset`
    never advances it: `fit` sets it at each epoch's start. `prepare`, when given, turns each batch of
    inputs into what `arrange` gets (a `preprocess.BatchFitter`: images fitted to a model batch by batch).
    """

    def __init__(self, inputs, second, batch_size, arrange=images_and_labels, shuffle=False, seed=0,
                 start_epoch=0, prepare=None):
        super().__init__()
        inputs = tuple(inputs) if isinstance(inputs, list) else inputs  # as tf.data would stack a list
        n = len(inputs[0]) if isinstance(inputs, tuple) else len(inputs)
        if n != len(second):
            raise ValueError(f"inputs and second array differ in length: {n} vs {len(second)}")
        self.inputs, self.second, self.batch_size = inputs, second, int(batch_size)
        self.arrange, self.prepare = arrange, prepare
        self.order = EpochOrder(n, shuffle, seed, start_epoch)
        self.refresh()

    def in_chunks(self, batches, on_device=False):
        """The same feed serving `batches` consecutive batches at a time, in the same order.

        With `on_device` (JAX only) the arrays are copied to the accelerator once and each chunk is
        gathered there, so a step waits on no host-to-device copy of its images; not those of a feed that
        `prepare`s its batches, which are scaled by NumPy, as whole arrays are, to get the same values (XLA's
        division by 255 differs from NumPy's in the last bit for about half the uint8 values).
        """
        inputs, second = self.inputs, self.second
        if on_device and self.prepare is None:
            import jax

            inputs, second = jax.device_put((inputs, second))
        return ArrayFeed(inputs, second, self.batch_size * batches, self.arrange, self.order.shuffle,
                         self.order.seed, self.order.epoch, self.prepare)

    def tf_dataset(self):
        """The same batches, in the same order, as a tf.data pipeline (TensorFlow only). Keras' array
        adapter feeds `fit` this way; a PyDataset costs a Python call per batch (about 0.5 ms of CPU time
        more a batch on a 2-core CPU: benchmarks/feed_overhead.py). `fit` sets the epoch through
        `set_start_epoch`.

        Arrays of up to `TENSOR_COPY_LIMIT` bytes in all are copied into tensors and gathered there. Larger
        ones are gathered from the arrays themselves, batch by batch, by a `tf.numpy_function`: turning
        them into tensors takes twice their size again, and a tf.data iterator copies a captured tensor
        once more when it starts, so the copies would hold three to four times the arrays at the peak. The
        Python call costs about as much CPU time a batch as a PyDataset's."""
        import tensorflow as tf

        structure = (self.inputs, self.second)
        arrays = [np.asarray(a) for a in keras.tree.flatten(structure)]
        if sum(a.nbytes for a in arrays) <= TENSOR_COPY_LIMIT:
            with tf.device("/cpu:0"):  # tf.data reads them on the host, also where a GPU is the default device
                tensors = [tf.constant(a) for a in arrays]

            def parts_of(chosen):
                return [tf.gather(t, chosen) for t in tensors]
        else:
            specs = [tf.TensorSpec((None,) + a.shape[1:], tf.as_dtype(a.dtype)) for a in arrays]

            def parts_of(chosen):
                parts = tf.numpy_function(lambda i: [a[i] for a in arrays], [chosen], [s.dtype for s in specs],
                                          stateful=False)
                return [tf.ensure_shape(part, spec.shape) for part, spec in zip(parts, specs)]

        def batch(chosen):
            return self._arranged(*keras.tree.pack_sequence_as(structure, parts_of(chosen)))

        data = tf_epoch_indices(self.order).unbatch().batch(self.batch_size).map(batch)
        data = data.apply(tf.data.experimental.assert_cardinality(len(self))).prefetch(tf.data.AUTOTUNE)
        data = without_autotune(data)
        data.order = self.order
        return data

    def refresh(self):
        """Take the order of the epoch that `self.order` stands at."""
        self._order = self.order.current() if self.order.shuffle else None

    def __len__(self):
        return math.ceil(self.order.n / self.batch_size)

    def __getitem__(self, index):
        window = slice(index * self.batch_size, (index + 1) * self.batch_size)
        chosen = window if self._order is None else self._order[window]
        return self._arranged(_take(self.inputs, chosen), self.second[chosen])

    def _arranged(self, inputs, second):
        return self.arrange(inputs if self.prepare is None else self.prepare(inputs), second)

    def on_epoch_end(self):
        self.order.epoch += 1
        self.refresh()


def padded_to(arrays, size):
    """The batch `arrays` (one array or a structure of them) grown to `size` items by repeating its last item."""
    def pad(a):
        a = np.asarray(a)
        return a if len(a) >= size else np.concatenate([a, np.repeat(a[-1:], size - len(a), axis=0)])

    return keras.tree.map_structure(pad, arrays)


class WholeBatches(keras.utils.PyDataset):
    """A feed of prediction batches whose last, shorter batch is padded to a whole one (see `padded_to`),
    so a backend that compiles a program per batch shape compiles one. Outputs past `n` are padding."""

    def __init__(self, feed):
        super().__init__(workers=feed.workers, use_multiprocessing=feed.use_multiprocessing)
        self.feed, self.n = feed, feed.order.n

    def __len__(self):
        return len(self.feed)

    def __getitem__(self, index):
        return padded_to(self.feed[index], self.feed.batch_size)

