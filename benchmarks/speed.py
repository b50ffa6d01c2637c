"""Seconds per epoch of cladec's training commands against the plain Keras equivalent.

Plain equivalent: the same layers trained with `model.fit` on NumPy arrays, batch 128, the frozen
encoder inside the model. Both are timed in the same process, alternating, on all of Fashion-MNIST;
an epoch's time runs from its `on_epoch_begin` to the next one (the last to `on_train_end`), so
checkpoints and other callbacks count; the first epoch (tracing) is left out and the fastest of the
rest reported.

    python benchmarks/speed.py [--epochs 3] [--limit N] [--out reports/speed.json]
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from cladec_cli import runtime

runtime.import_tensorflow_quietly()

import keras  # noqa: E402

from cladec_cli.architectures import build_classifier  # noqa: E402
from cladec_cli.classifier import classification_loss, load_classifier, train_classifier  # noqa: E402
from cladec_cli.cladec import decoder_for, frozen_encoder, train_decoder  # noqa: E402
from cladec_cli.data.datasets import load_dataset  # noqa: E402
from cladec_cli.layers import resolve_layer  # noqa: E402
from cladec_cli.losses import sum_squared_error  # noqa: E402
from cladec_cli.refae import build_refae, train_refae  # noqa: E402
from cladec_cli.training import TrainSettings  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    """Epoch durations from one epoch's start to the next (so every callback's cost counts)."""

    def __init__(self):
        super().__init__()
        self.starts = []

    def on_epoch_begin(self, epoch, logs=None):
        self.starts.append(time.perf_counter())

    def on_train_end(self, logs=None):
        self.starts.append(time.perf_counter())

    @property
    def times(self):
        return [b - a for a, b in zip(self.starts, self.starts[1:])]


def steady(times):
    return min(times[1:]) if len(times) > 1 else times[0]


def plain_fit(model, x, y, loss, epochs, loss_weights=None):
    timer = EpochTimer()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, loss_weights=loss_weights)
    model.fit(x, y, batch_size=128, epochs=epochs, verbose=0, callbacks=[timer])
    return steady(timer.times)


def tool_fit(train, epochs):
    timer = EpochTimer()
    settings = TrainSettings(epochs=epochs, batch_size=128, verbose=0, overwrite=True, extra_callbacks=[timer])
    train(settings)
    return steady(timer.times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", default="reports/speed.json")
    args = parser.parse_args()
    data = load_dataset("fashion_mnist", limit=args.limit)
    x, y = data.train.images, data.train.labels
    work = Path(tempfile.mkdtemp())
    results = {"device": runtime.device_description(), "cpus": os.cpu_count(), "train_images": len(y),
               "epochs_timed": args.epochs - 1, "rows": []}

    def record(name, tool, plain):
        row = {"command": name, "tool_s_per_epoch": round(tool, 2), "plain_s_per_epoch": round(plain, 2),
               "ratio_tool_over_plain": round(tool / plain, 3)}
        results["rows"].append(row)
        print(json.dumps(row), flush=True)

    clf_path = work / "classifier.h5"
    tool = tool_fit(lambda s: train_classifier(data, s, clf_path), args.epochs)
    model = build_classifier(x.shape[1:], 10)
    record("train-classifier", tool, plain_fit(model, x, y, classification_loss(model), args.epochs))

    classifier, provenance = load_classifier(clf_path)
    for layer_spec, alpha in ((-1, 0.0), (-1, 0.99), (-2, 0.0)):
        layer = resolve_layer(classifier, layer_spec)
        tool = tool_fit(lambda s: train_decoder(classifier, provenance, data, layer.name, alpha, s,
                                                work / "decoder.h5"), args.epochs)
        encoder, decoder = frozen_encoder(classifier, layer), decoder_for(classifier, layer, provenance)
        inputs = keras.Input(x.shape[1:])
        recon = decoder(encoder(inputs, training=False))
        if alpha == 0.0:
            plain = plain_fit(keras.Model(inputs, recon), x, x, sum_squared_error, args.epochs)
        else:
            classifier.trainable = False
            logits = classifier(recon, training=False)
            plain = plain_fit(keras.Model(inputs, [recon, logits]), x, [x, y],
                              [sum_squared_error, classification_loss(classifier)], args.epochs,
                              [1 - alpha, alpha])
        record(f"train-decoder --layer {layer_spec} --alpha {alpha:g}", tool, plain)

    layer = resolve_layer(classifier, -1)
    tool = tool_fit(lambda s: train_refae(classifier, provenance, data, layer.name, s, work / "refae.h5"),
                    args.epochs)
    plain = plain_fit(build_refae(classifier, layer, provenance), x, x, sum_squared_error, args.epochs)
    record("train-refae --layer -1", tool, plain)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
