"""Peak memory of `cladec train-decoder` on in-memory arrays (Fashion-MNIST scaled to a classifier's
larger input), with the fitted arrays gathered batch by batch as cladec does when it holds them, in the
same run copied into tensors first (`TENSOR_COPY_LIMIT` raised past the arrays' size, as every feed was
before), and held as they come and fitted batch by batch (`memory.hold_limit` set to 0, as it is for images
that would take more than half the available memory fitted).

Saves an untrained classifier of SIZE x SIZE x 3 (two strided convolutions, global pooling, a Dense
layer of logits), then runs one epoch of `cladec train-decoder --layer -1` on all of Fashion-MNIST in a
child process per arm and reads that child's peak resident set size (`os.wait4`'s ru_maxrss), beside the
float32 size of the held images and the peak of a process that only imports TensorFlow.

    python benchmarks/memory_arrays.py [--size 64] [--data-dir DIR] [--arms A,B] [--json]
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from memory_folder import MIB, peak_rss

# `cladec` with every feed's arrays copied into tensors, as `ArrayFeed.tf_dataset` does below its limit.
COPYING = ("from cladec_cli.data import feed; feed.TENSOR_COPY_LIMIT = 1 << 62; "
           "from cladec_cli.cli.main import main; main()")
# `cladec` holding no images fitted.
FITTING = ("from cladec_cli import memory; memory.hold_limit = lambda: 0; "
           "from cladec_cli.cli.main import main; main()")
ARMS = {"gathered_from_arrays": ["-m", "cladec_cli"], "copied_into_tensors": ["-c", COPYING],
        "fitted_per_batch": ["-c", FITTING]}


def save_classifier(path, size):
    """An untrained classifier of size x size x 3 images into 10 logits."""
    import keras

    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, x)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.save(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--arms", default=",".join(ARMS), help="Arms to run, in this order.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    figures = {"dataset": "fashion_mnist", "image_shape": [args.size, args.size, 3], "layer": "-1", "epochs": 1,
               "held_float32_mib": round(70000 * args.size * args.size * 3 * 4 / MIB, 1)}
    with tempfile.TemporaryDirectory(prefix="cladec-memory-") as work:
        classifier = Path(work) / "classifier.keras"
        save_classifier(classifier, args.size)
        code, baseline, _, err = peak_rss([sys.executable, "-c", "import tensorflow"], env)
        assert code == 0, err
        figures["baseline_import_tensorflow_peak_rss_mib"] = round(baseline, 1)
        command = ["train-decoder", "--classifier", str(classifier), "--dataset", "fashion_mnist", "--layer", "-1",
                   "--epochs", "1", "--out", str(Path(work) / "decoder.h5"), "--overwrite", "-q"]
        command += ["--data-dir", args.data_dir] if args.data_dir else []
        for arm in args.arms.split(","):
            code, rss, seconds, err = peak_rss([sys.executable, *ARMS[arm], *command], env)
            assert code == 0, err
            figures[arm] = {"peak_rss_mib": round(rss, 1), "seconds": round(seconds, 1)}
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"fashion_mnist at {args.size}x{args.size}x3: {figures['held_float32_mib']:.1f} MiB of float32 images held; "
          f"python -c 'import tensorflow' peaks at {figures['baseline_import_tensorflow_peak_rss_mib']:.1f} MiB")
    for arm in args.arms.split(","):
        print(f"train-decoder --layer -1, 1 epoch, {arm.replace('_', ' ')}: peak RSS "
              f"{figures[arm]['peak_rss_mib']:8.1f} MiB ({figures[arm]['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
