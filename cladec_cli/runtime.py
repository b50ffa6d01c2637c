"""Process-wide TensorFlow set-up: a quiet import, seeds, determinism, device description."""

import os
import sys


def import_tensorflow_quietly():
    """Import TensorFlow with the C++ start-up banner (which no variable silences) sent to /dev/null."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    # Retracing notices from predicting with many models in one process say nothing actionable.
    sys.modules["tensorflow"].get_logger().setLevel("ERROR")


def seed_everything(seed):
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic, so CPU runs repeat bit for bit."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()


def device_description():
    """'GPU: <names>' when TensorFlow sees a GPU, else 'CPU'."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return "GPU: " + ", ".join(g.name for g in gpus) if gpus else "CPU"
