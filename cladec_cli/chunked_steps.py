"""Several optimizer steps in one compiled call.

Keras' `steps_per_execution` fuses steps only under TensorFlow; under JAX it calls the compiled step
once per batch from Python, so a tiny model on a GPU waits on dispatch and on one host-to-device copy
per batch. Here the feed serves chunks of `steps` consecutive batches, and the model's `train_step`
walks through a chunk batch by batch inside the compiled function (`lax.scan` under JAX, a
`tf.while_loop` under TensorFlow, a loop under PyTorch). Each optimizer step still sees one batch of
`batch_size`, in the order an unchunked run would see it, so the training is the same; only the
number of calls from Python changes.
"""

import keras

from cladec_cli import runtime

# XLA:CPU runs the convolutions of a rolled loop body several times slower (the decoder at 4 steps a
# call: 4x), so on CPUs the chunk's steps are unrolled; on GPUs the loop stays rolled, which keeps
# compile time from growing with the steps per call.
UNROLL_ON_GPU = False


def install(model, batch_size, on_gpu):
    """Make `model.train_step` take chunks of whole batches of `batch_size` (and one shorter batch at
    the end of an epoch) and run one optimizer step per batch; `on_gpu` says where it trains. The
    chunk's logs are those of its last step, which are running means over the epoch."""
    step = model.train_step
    kind = runtime.backend()
    if kind == "jax":
        chunked = _jax_chunked(step, batch_size, UNROLL_ON_GPU or not on_gpu)
    elif kind == "tensorflow":
        chunked = _tensorflow_chunked(step, batch_size, model.get_metrics_result if _keras_own_step(model) else None)
    else:
        chunked = _eager_chunked(step, batch_size)
    model.train_step = chunked
    # A train function made before holds the unchunked step.
    model.train_function = None


def _jax_chunked(step, batch_size, unroll):
    import jax

    def chunked_step(state, data):
        n = jax.tree_util.tree_leaves(data)[0].shape[0]
        full, rest = divmod(n, batch_size)

        def part(start, stop):
            return jax.tree_util.tree_map(lambda a: a[start:stop], data)

        logs = None
        if full:
            stacked = jax.tree_util.tree_map(
                lambda a: a[:full * batch_size].reshape((full, batch_size) + a.shape[1:]), data)

            def one(carry, batch):
                batch_logs, carry = step(carry, batch)
                return carry, batch_logs

            state, every_logs = jax.lax.scan(one, state, stacked, unroll=unroll)
            logs = jax.tree_util.tree_map(lambda a: a[-1], every_logs)
        if rest:
            logs, state = step(state, part(full * batch_size, n))
        return logs, state

    return chunked_step


def _keras_own_step(model):
    """Whether `model` trains with Keras' own `train_step` and `compute_metrics`, whose logs are then
    `model.get_metrics_result()`."""
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    return all(getattr(type(model), name) is getattr(TensorFlowTrainer, name) for name in ("train_step", "compute_metrics"))


def _tensorflow_chunked(step, batch_size, metrics_result=None):
    """With `metrics_result` (the logs Keras' own step returns, read from the metrics), every batch of a
    chunk runs in the loop, so the step is traced once; without, the last batch runs after the loop,
    to return the step's own logs, and the step is traced twice."""
    import tensorflow as tf

    def part(data, start):
        return tf.nest.map_structure(lambda a: a[start:start + batch_size], data)

    def chunked_step(data):
        n = tf.shape(tf.nest.flatten(data)[0])[0]
        count = (n + batch_size - 1) // batch_size

        def body(i):
            step(part(data, i * batch_size))
            return (i + 1,)

        in_loop = count if metrics_result is not None else count - 1
        tf.while_loop(lambda i: i < in_loop, body, (tf.constant(0),))
        if metrics_result is not None:
            return metrics_result()
        return step(part(data, (count - 1) * batch_size))

    return chunked_step


def _eager_chunked(step, batch_size):
    def chunked_step(data):
        n = len(keras.tree.flatten(data)[0])
        logs = None
        for start in range(0, n, batch_size):
            logs = step(keras.tree.map_structure(lambda a: a[start:start + batch_size], data))
        return logs

    return chunked_step
