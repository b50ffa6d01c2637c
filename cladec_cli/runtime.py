"""Process-wide TensorFlow set-up: quiet logs, seeds, determinism, device description."""

import keras
import tensorflow as tf


def seed_everything(seed):
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic, so CPU runs repeat bit for bit."""
    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()


def device_description():
    """'GPU: <names>' when TensorFlow sees a GPU, else 'CPU'."""
    gpus = tf.config.list_physical_devices("GPU")
    return "GPU: " + ", ".join(g.name for g in gpus) if gpus else "CPU"
