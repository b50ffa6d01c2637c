"""Shared fixtures: tiny synthetic datasets and small trained artifacts, made once per session."""

import gzip
import importlib.util
import json
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cladec_cli.cli.main import cli

N_CLASSES = 4
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def synthetic_images(n, size=32, channels=1, n_classes=N_CLASSES, seed=0):
    """Images whose class is a bright square in one of the quadrants, plus noise; uint8."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    images = rng.integers(0, 60, size=(n, size, size, channels)).astype(np.uint8)
    half = size // 2
    for i, label in enumerate(labels):
        top, left = (label // 2) * half, (label % 2) * half
        images[i, top + 2:top + half - 2, left + 2:left + half - 2] = 220
    return images, labels.astype(np.int64)


def quadrant_classifier(size=32, first=None):
    """A classifier that knows the answer for `synthetic_images`: the logits are 10x the quadrants' mean
    brightness, so it predicts every synthetic image's class. Its architecture (a Dense on the four
    quadrant means) learns quickly, so Acc Eval has known answers too. `first` is a weightless layer put
    in front (to give the classifier an explainable layer that passes the image on unchanged)."""
    import keras

    inputs = keras.Input((size, size, 1))
    h = first(inputs) if first is not None else inputs
    means = keras.layers.Flatten(name="means")(keras.layers.AveragePooling2D(size // 2, name="quadrants")(h))
    logits = keras.layers.Dense(4, kernel_initializer=keras.initializers.Identity(10.0), name="logits")(means)
    return keras.Model(inputs, logits, name="quadrant_classifier")


@pytest.fixture(autouse=True)
def process_setup_put_back():
    """Whatever a test leaves of the global dtype policy and op determinism (by calling `training.start`
    outside a training run, say) is put back, so that no later test in the same process sees it."""
    from cladec_cli import runtime

    with runtime.setup_kept():
        yield


@pytest.fixture
def ctrl_c_raises():
    """Ctrl-C (SIGINT) raises KeyboardInterrupt during the test, as it does in a terminal, also where this
    process was started with SIGINT ignored (a background job of a shell without job control, as some CI
    runners start their commands); the handler in place before is put back after."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def loud_classifier():
    """A classifier with huge logits (a 1x1 convolution weighting each channel by 12,000 before them): in
    the first steps of training in float16, a decoder of the logits overflows at other loss scales than
    a decoder of the first layer."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 1))
    quiet = keras.layers.Conv2D(4, 3, strides=2, name="quiet")(inputs)
    loud = keras.layers.Conv2D(4, 1, kernel_initializer=keras.initializers.Constant(12000.0), name="loud")(quiet)
    logits = keras.layers.Dense(4, name="logits")(keras.layers.GlobalAveragePooling2D()(loud))
    return keras.Model(inputs, logits)


def flipped(images):
    """Images turned by 180 degrees: the bright square moves to the opposite quadrant (class c -> 3 - c)."""
    return np.asarray(images)[:, ::-1, ::-1]


def write_npz(path, n_train=240, n_test=80, size=32, channels=1, seed=0):
    """A synthetic `npz:` dataset file."""
    x_train, y_train = synthetic_images(n_train, size, channels, seed=seed)
    x_test, y_test = synthetic_images(n_test, size, channels, seed=seed + 1)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
             class_names=np.array(["top-left", "top-right", "bottom-left", "bottom-right"]))
    return path


def write_idx(path, array, compress=True):
    """Write a uint8 array as an IDX file (gzip-compressed if `compress`)."""
    array = np.asarray(array, np.uint8)
    payload = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(payload)
    return path


def write_idx_dataset(folder, n_train=200, n_test=60, compress=True):
    """A miniature Fashion-MNIST/MNIST in the original IDX files (28x28, 10 classes)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = synthetic_images(n, size=28, n_classes=10, seed=seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images[..., 0], compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress)
    return folder


def small_conv_classifier():
    """Randomly initialised, with BatchNorm: classifiers trained side by side (or stacked) must start and
    train alike, BatchNorm's statistics included."""
    import keras

    inputs = keras.Input((32, 32, 1))
    h = keras.layers.Conv2D(4, 3, strides=2)(inputs)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization()(h))
    return keras.Model(inputs, keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(h)))


def held_split(images, labels, part):
    """The in-memory Split of `images[part]` with `labels[part]` (32x32 gray)."""
    from cladec_cli.data.split import Split

    return Split(labels[part], (32, 32, 1), images=np.ascontiguousarray(images[part]))


def benchmark_script(name):
    """The module of benchmarks/<name>.py (the benchmarks are scripts, not a package)."""
    path = Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def invoke(*args, expect=0):
    """Run the CLI in-process; assert the exit code and return the result."""
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == expect, f"exit {result.exit_code}, output:\n{result.output}"
    return result


@pytest.fixture(scope="session")
def npz_dataset(tmp_path_factory):
    """`npz:PATH` spec of a tiny synthetic 32x32 gray dataset with 4 classes."""
    return f"npz:{write_npz(tmp_path_factory.mktemp('data') / 'tiny.npz')}"


@pytest.fixture(scope="session")
def trained(tmp_path_factory, npz_dataset):
    """A classifier, a ClaDec decoder (layer -2) and a RefAE trained briefly through the CLI."""
    root = tmp_path_factory.mktemp("models")
    paths = {"classifier": root / "classifier.h5", "decoder": root / "cladec.h5", "refae": root / "refae.h5",
             "dataset": npz_dataset, "root": root}
    invoke("train-classifier", "--dataset", npz_dataset, "--epochs", 3, "--batch-size", 32, "-q",
           "--out", paths["classifier"])
    invoke("train-decoder", "--classifier", paths["classifier"], "--layer", -2, "--epochs", 1,
           "--batch-size", 32, "-q", "--out", paths["decoder"])
    invoke("train-refae", "--classifier", paths["classifier"], "--layer", -2, "--epochs", 1,
           "--batch-size", 32, "-q", "--out", paths["refae"])
    return paths


def read_group(path):
    """The `cladec` provenance group of a model file, read with plain h5py."""
    with h5py.File(path, "r") as f:
        return {key: json.loads(value) for key, value in f["cladec"].attrs.items()}


@pytest.fixture(scope="session")
def setup(trained):
    """The trained fixture's classifier, its provenance and its dataset, loaded in this process."""
    from cladec_cli.classifier import load_classifier
    from cladec_cli.data.datasets import load_dataset

    classifier, provenance = load_classifier(trained["classifier"])
    return classifier, provenance, load_dataset(trained["dataset"])


def pytest_configure(config):
    """Under JAX, commands keep compiled programs (`runtime.keep_compiled_programs`): in a folder of the test
    session's own, not in the user's cache."""
    import os
    import tempfile

    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="cladec-test-jax-"))


def pytest_collection_modifyitems(config, items):
    """Skip tests marked gpu without a GPU, and tests marked tensorflow_only under another backend."""
    from cladec_cli import runtime

    has_gpu = runtime.current_device().is_gpu
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="needs a GPU"))
        if "tensorflow_only" in item.keywords and not runtime.has_tensorflow():
            item.add_marker(pytest.mark.skip(reason="needs the TensorFlow backend"))


requires_fashion_mnist = pytest.mark.skipif(
    not (FASHION_MNIST / "train-images-idx3-ubyte.gz").exists(),
    reason="real Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)
