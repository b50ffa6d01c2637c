"""The decoder's last convolution in float32 (as cladec builds it) against the same layer in the mixed
policy's compute dtype, trained under mixed precision: seconds per epoch of the layer -1 decoder alone
and of the four decoders of layers -1 to -4 in one multi-output model, as a fused run trains them.

    python benchmarks/output_layer_ab.py OUT.json [--limit 16384] [--epochs 3] [--rounds 2]
        [--precision bfloat16] [--steps-per-execution 64]

Both variants give float32 reconstructions and sum their squared errors in float32; only the last
convolution's arithmetic differs. Codes are normal noise of each layer's shape and targets uniform
noise (these layers take the same time whatever the values). The variants take turns, `--rounds` times;
a fit's steady epoch is the fastest after its first. One JSON line per fit, and OUT.json at the end.
"""

import argparse
import json
import sys
import time

import keras
import numpy as np

from cladec_cli.architectures import build_classifier
from cladec_cli.benchmark import EpochTimer, steady_seconds
from cladec_cli.decoder import build_decoder
from cladec_cli.layers import resolve_layers
from cladec_cli.losses import sum_squared_error

IMAGE, CLASSES, BATCH = (32, 32, 1), 10, 128
VARIANTS = {"float32": "float32", "compute": None}


def mean_sse(images, reconstructions):
    return keras.ops.mean(sum_squared_error(images, reconstructions))


def decoders_model(code_shapes, output_dtype):
    """One decoder per code shape, side by side in one model (one input and one output each)."""
    decoders = [build_decoder(shape, IMAGE, name=f"decoder{i}", output_dtype=output_dtype)
                for i, shape in enumerate(code_shapes)]
    inputs = [keras.Input(shape=shape, name=f"code{i}") for i, shape in enumerate(code_shapes)]
    outputs = [keras.layers.Identity(name=f"out{i}", dtype="float32")(d(x))
               for i, (d, x) in enumerate(zip(decoders, inputs))]
    return keras.Model(inputs, outputs)


def time_fit(code_shapes, output_dtype, n_images, epochs, steps_per_execution, rng):
    """Steady seconds per epoch of training the decoders of `code_shapes` on noise."""
    keras.utils.set_random_seed(0)
    model = decoders_model(code_shapes, output_dtype)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=[mean_sse] * len(code_shapes),
                  steps_per_execution=steps_per_execution)
    codes = [rng.normal(size=(n_images,) + shape).astype("float32") for shape in code_shapes]
    images = rng.uniform(size=(n_images,) + IMAGE).astype("float32")
    timer = EpochTimer()
    model.fit(codes, [images] * len(code_shapes), batch_size=BATCH, epochs=epochs, verbose=0,
              callbacks=[timer])
    fastest, _ = steady_seconds([timer.epoch_seconds()])
    return fastest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--limit", type=int, default=16384)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", choices=["bfloat16", "float16"], default="bfloat16")
    parser.add_argument("--steps-per-execution", type=int, default=64)
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch compiles)")
    keras.mixed_precision.set_global_policy(f"mixed_{args.precision}")
    classifier = build_classifier(IMAGE, CLASSES)
    shapes = [tuple(layer.shape) for layer in resolve_layers(classifier, ["-1", "-2", "-3", "-4"])]
    cases = {"layer -1": shapes[:1], "layers -1 to -4": shapes}
    rng = np.random.default_rng(0)
    rows = []
    for round_ in range(args.rounds):
        for case, code_shapes in cases.items():
            for variant, dtype in VARIANTS.items():
                start = time.perf_counter()
                seconds = time_fit(code_shapes, dtype, args.limit, args.epochs, args.steps_per_execution, rng)
                row = {"case": case, "output_layer": variant, "round": round_, "s_per_epoch": seconds,
                       "images_per_s": args.limit / seconds, "fit_s": time.perf_counter() - start}
                print(json.dumps(row), flush=True)
                rows.append(row)
    summary = {}
    for case in cases:
        best = {v: min(r["s_per_epoch"] for r in rows if r["case"] == case and r["output_layer"] == v)
                for v in VARIANTS}
        summary[case] = {**{f"{v}_s_per_epoch": s for v, s in best.items()},
                         "compute_speedup": best["float32"] / best["compute"]}
    result = {"backend": keras.backend.backend(), "keras": keras.__version__, "precision": args.precision,
              "images": args.limit, "batch_size": BATCH, "epochs": args.epochs,
              "steps_per_execution": args.steps_per_execution, "code_shapes": [list(s) for s in shapes],
              "rows": rows, "summary": summary}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
