"""Seconds per epoch of the plain Keras peer of `train-decoder --layer -1 --alpha 0` on all training
images: the yardstick for `make demo`'s wall time.

    python benchmarks/plain_decoder_epoch.py CLASSIFIER.h5 [--epochs 2]

It prints each epoch's seconds (the first includes tracing) and the fastest after the first.
"""

import argparse
import sys
import tempfile

from cladec_cli.benchmark import Bench, EpochTimer, decoder_case, steady_seconds
from cladec_cli.classifier import load_classifier
from cladec_cli.data.datasets import load_dataset
from cladec_cli.training import TrainSettings


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("classifier")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    classifier, provenance = load_classifier(args.classifier)
    dataset = load_dataset("fashion_mnist")
    settings = TrainSettings(epochs=args.epochs, verbose=0)
    with tempfile.TemporaryDirectory() as work:
        case = decoder_case(Bench(dataset, settings, work), classifier, provenance, -1, 0.0)
        timer = EpochTimer()
        case.peer(args.epochs, [timer])
    seconds = timer.epoch_seconds()
    print(f"{settings.runtime().line()}; {len(dataset.train)} images")
    print("plain Keras decoder, s per epoch:", ", ".join(f"{s:.2f}" for s in seconds))
    print(f"fastest after the first: {steady_seconds([seconds])[0]:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
