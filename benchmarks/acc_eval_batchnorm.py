"""Acc Eval of a classifier of one's own with Keras' BatchNorm momentum (0.99), with the evaluation
classifiers' moving statistics and with statistics from the reconstructions (`--eval-bn-statistics data`).

Trains a Sequential 28x28 classifier (two Conv2D-BatchNorm-ReLU-MaxPooling blocks, Dropout 0.3, Dense
logits) with plain Keras on `--limit` Fashion-MNIST training images, then through the command line a
ClaDec decoder and a RefAE (with `--bn-statistics data`) of layer -2, and evaluates them both ways.

    python benchmarks/acc_eval_batchnorm.py [--limit 2000] [--epochs 20] [--decoder-epochs 4]
                                            [--eval-epochs 4] [--data-dir DIR] [--json]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def save_classifier(path, limit, epochs, data_dir=None):
    """Train the classifier on `limit` training images and save it; returns its test accuracy."""
    import keras

    from cladec_cli.data.datasets import load_dataset

    data = load_dataset("fashion_mnist", data_dir, image_shape=(28, 28, 1), limit=limit)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, padding="same"), keras.layers.BatchNormalization(), keras.layers.ReLU(),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, padding="same"), keras.layers.BatchNormalization(), keras.layers.ReLU(),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dropout(0.3), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(*data.train.arrays(), epochs=epochs, batch_size=64, verbose=0)
    model.save(path)
    return float(model.evaluate(*data.test.arrays(), verbose=0)[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--decoder-epochs", type=int, default=4)
    parser.add_argument("--eval-epochs", type=int, default=4)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    figures = {"limit": args.limit, "classifier_epochs": args.epochs, "decoder_epochs": args.decoder_epochs,
               "eval_epochs": args.eval_epochs}
    with tempfile.TemporaryDirectory(prefix="cladec-bn-") as work:
        work = Path(work)
        classifier = work / "classifier.keras"
        figures["classifier_test_accuracy"] = save_classifier(classifier, args.limit, args.epochs, args.data_dir)
        data = ["--dataset", "fashion_mnist", "--limit", str(args.limit)]
        data += ["--data-dir", args.data_dir] if args.data_dir else []

        def cladec(*command):
            subprocess.run([sys.executable, "-m", "cladec_cli", *command, *data, "-q"], check=True, env=env)

        trained = ["--classifier", str(classifier), "--layer", "-2", "--epochs", str(args.decoder_epochs)]
        cladec("train-decoder", *trained, "--out", str(work / "decoder.h5"))
        cladec("train-refae", *trained, "--bn-statistics", "data", "--out", str(work / "refae.h5"))
        for statistics in ("moving", "data"):
            out = work / f"metrics_{statistics}.json"
            cladec("evaluate", "--classifier", str(classifier), "--decoder", str(work / "decoder.h5"),
                   "--refae", str(work / "refae.h5"), "--eval-epochs", str(args.eval_epochs),
                   "--eval-bn-statistics", statistics, "--out", str(out))
            result = json.loads(out.read_text())
            figures[statistics] = {"acc_eval": result["acc_eval"], "acc_eval_bn_lag": result.get("acc_eval_bn_lag")}
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"classifier test accuracy {figures['classifier_test_accuracy']:.4f}")
    for statistics in ("moving", "data"):
        acc, lag = figures[statistics]["acc_eval"], figures[statistics]["acc_eval_bn_lag"] or {}
        warned = ", ".join(f"{m} {r['moving']:.4f} with moving statistics, {r['data']:.4f} with the sample's "
                           f"(of {r['images']} training reconstructions)" for m, r in lag.items())
        print(f"--eval-bn-statistics {statistics:6s} Acc Eval ClaDec {acc['cladec']:.4f}, RefAE {acc['refae']:.4f}"
              + (f"; lag warned: {warned}" if lag else ""))


if __name__ == "__main__":
    main()
