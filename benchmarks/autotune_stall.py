"""Epoch times of `fit` with tf.data's autotuning on and off (TensorFlow only).

A small dense model trains on random arrays fed three ways, taking turns: NumPy arrays through Keras'
array adapter (autotuning on, as plain Keras feeds them), a tf.data pipeline with autotuning on, and
the same pipeline with it off (`cladec_cli.data.feed.without_autotune`, as cladec feeds in-memory data).
Epochs after the first are kept; each variant's epochs, their fastest and median, and how many took at
least 1.3 times the fastest are printed and written to OUT.json.

    python benchmarks/autotune_stall.py [--rounds 2] [--epochs 6] [--width 2048] OUT.json
"""
import argparse
import json
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from cladec_cli.data.feed import without_autotune

SLOW = 1.3  # an epoch this many times the fastest or more counts as held up


class EpochSeconds(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def train(variant, x, y, width, epochs):
    """Epoch seconds of one `fit` fed the `variant` way."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Dense(width, activation="relu"),
                              keras.layers.Dense(width, activation="relu"), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    timer = EpochSeconds()
    if variant == "keras arrays":
        model.fit(x, y, batch_size=128, epochs=epochs, verbose=0, callbacks=[timer])
    else:
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(128).prefetch(tf.data.AUTOTUNE)
        model.fit(without_autotune(data) if variant == "tf.data, autotune off" else data, epochs=epochs,
                  shuffle=False, verbose=0, callbacks=[timer])
    return timer.seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--width", type=int, default=2048)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x, y = rng.random((10000, 784), np.float32), rng.integers(0, 10, 10000)
    variants = ["keras arrays", "tf.data, autotune on", "tf.data, autotune off"]
    kept = {v: [] for v in variants}
    for _ in range(args.rounds):
        for variant in variants:
            kept[variant] += train(variant, x, y, args.width, args.epochs)[1:]
    summary = {}
    for variant, seconds in kept.items():
        fastest = min(seconds)
        summary[variant] = {"fastest": fastest, "median": statistics.median(seconds),
                            "held_up": sum(s >= SLOW * fastest for s in seconds), "epochs": len(seconds)}
        print(f"{variant:22s} fastest {fastest:.2f} s  median {summary[variant]['median']:.2f} s  "
              f"{summary[variant]['held_up']} of {len(seconds)} epochs at {SLOW}x the fastest or more: "
              + " ".join(f"{s:.2f}" for s in seconds))
    with open(args.out, "w") as f:
        json.dump({"tensorflow": tf.__version__, "keras": keras.__version__, "rounds": args.rounds,
                   "epochs": args.epochs, "width": args.width, "summary": summary, "epoch_seconds": kept}, f,
                  indent=1)


if __name__ == "__main__":
    main()
