"""Process-wide TensorFlow set-up: a quiet import, seeds, determinism, device description."""

import os
import sys


def require_backend():
    """Refuse to go on, in one line, when Keras' backend is TensorFlow (its default) and TensorFlow is missing."""
    import importlib.util

    from cladec_cli.errors import CladecError

    if sys.modules.get("tensorflow") is not None or importlib.util.find_spec("tensorflow") is not None:
        return
    try:
        import keras  # noqa: F401  (loads the configured backend: TensorFlow unless KERAS_BACKEND says otherwise)
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] == "tensorflow":
            raise CladecError("TensorFlow is not installed: pip install 'cladec[cpu]' (or 'cladec[gpu]'), "
                              "or pick another Keras backend with KERAS_BACKEND") from None
        raise


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
