"""What serving in-memory batches costs under TensorFlow, without training: Keras' array adapter (plain
`fit(x, y)`), cladec's `ArrayFeed` as a PyDataset, and the same feed through tf.data (`ArrayFeed.tf_dataset`,
what `fit` uses).

    python benchmarks/feed_overhead.py [--limit 10000] [--rounds 4] [--epochs 10]

After one epoch each that traces the reading function, every round reads every feed for `--epochs`
epochs inside a `tf.function`, pulling batches as Keras' training loop does, and prints milliseconds
of wall-clock and CPU time per batch.
"""

import argparse
import sys
import time

import tensorflow as tf
from keras.src.trainers.data_adapters import get_data_adapter
from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

from cladec_cli.data.datasets import load_dataset
from cladec_cli.data.feed import ArrayFeed, set_start_epoch


def feeds(x, y, batch_size):
    """name -> (tf.data pipeline, the feed whose epoch it follows or None)."""
    feed = ArrayFeed(x, y, batch_size, shuffle=True)
    through_tf = ArrayFeed(x, y, batch_size, shuffle=True)
    return {
        "keras array adapter": (get_data_adapter(x, y, batch_size=batch_size, shuffle=True).get_tf_dataset(), None),
        "PyDataset": (PyDatasetAdapter(feed, shuffle=False).get_tf_dataset(), feed),
        "tf.data": (through_tf.tf_dataset(), through_tf),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    x, y = load_dataset("fashion_mnist", limit=args.limit).train.arrays()
    batches = len(x) // args.batch_size  # whole batches only: every feed serves these

    @tf.function
    def read_epoch(iterator):
        total = tf.constant(0.0)
        for _ in tf.range(batches):
            images, _ = next(iterator)
            total += images[0, 0, 0, 0]
        return total

    def read(data, feed, epochs):
        for epoch in range(epochs):
            if feed is not None:
                set_start_epoch(feed, epoch)
            read_epoch(iter(data))

    served = feeds(x, y, args.batch_size)
    for data, feed in served.values():
        read(data, feed, 1)  # traces the reading function
    print(f"{len(x)} images, batch {args.batch_size}; ms per batch, wall-clock and CPU")
    for _ in range(args.rounds):
        for name, (data, feed) in served.items():
            wall, cpu = time.perf_counter(), time.process_time()
            read(data, feed, args.epochs)
            n = args.epochs * batches
            print(f"{name:20s} {(time.perf_counter() - wall) / n * 1e3:6.3f} wall  "
                  f"{(time.process_time() - cpu) / n * 1e3:6.3f} cpu", flush=True)


if __name__ == "__main__":
    sys.exit(main())
