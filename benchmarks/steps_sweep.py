"""Seconds per epoch of `train-decoder --layer -1` and of the fused 4-layer run at several steps per
execution, on the device at hand: the measurement behind the GPU's default steps per execution.

    python benchmarks/steps_sweep.py OUT.json [--limit N] [--epochs E] [--steps 1,16,64,256] [--unroll]

`--unroll` unrolls the steps of a chunk on GPUs too (see `cladec_cli.chunked_steps`).
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from cladec_cli import chunked_steps, runtime
from cladec_cli.benchmark import EpochTimer, script_dataset, steady_seconds
from cladec_cli.classifier import load_classifier, train_classifier
from cladec_cli.cladec import train_decoders
from cladec_cli.training import TrainSettings


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", default="1,16,64,256")
    parser.add_argument("--unroll", action="store_true")
    args = parser.parse_args()
    chunked_steps.UNROLL_ON_GPU = args.unroll
    dataset = script_dataset(limit=args.limit)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        base = TrainSettings(epochs=1, verbose=0, overwrite=True)
        train_classifier(dataset, base, work / "classifier.h5")
        classifier, provenance = load_classifier(work / "classifier.h5")
        for steps in [int(s) for s in args.steps.split(",")]:
            for layers in ([-1], [-1, -2, -3, -4]):
                timer = EpochTimer()
                settings = TrainSettings(epochs=args.epochs, verbose=0, overwrite=True, steps_per_execution=steps,
                                         extra_callbacks=[timer])
                outs = [work / f"d{i}.h5" for i in range(len(layers))]
                train_decoders(classifier, provenance, dataset, layers, 0.0, settings, outs, cache_codes="no")
                fastest, median = steady_seconds([timer.epoch_seconds()])
                row = {"steps_per_execution": steps, "unrolled": args.unroll, "layers": layers, "s_per_epoch": fastest,
                       "median_s_per_epoch": median, "images_per_s": len(dataset.train) / fastest,
                       "first_epoch_s": timer.epoch_seconds()[0]}
                rows.append(row)
                print(json.dumps(row), flush=True)
    result = {**base.runtime().provenance(), "device": runtime.current_device().description,
              "train_images": len(dataset.train), "epochs": args.epochs, "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
