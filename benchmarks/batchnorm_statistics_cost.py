"""What `--bn-statistics data` (and the BatchNorm lag check of `evaluate`) costs on a model with many
BatchNorm layers: `batchnorm.statistics_from_data` on an untrained MobileNetV2 or DenseNet121 (Keras
applications, no weights) against one inference pass over the same images, in the same process.

The statistics are set layer after layer, each from the layer's inputs computed with the earlier layers'
new statistics: in one sweep through the graph where every layer's outputs over the images fit in memory,
else from a model cut at each BatchNorm layer (`--cut` forces that path, to compare the two).

    python benchmarks/batchnorm_statistics_cost.py [--model mobilenetv2|densenet121] [--images 2048]
        [--size 96] [--alpha 0.35] [--cut] [--json]
"""

import argparse
import json
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--alpha", type=float, default=0.35)
    parser.add_argument("--model", choices=("mobilenetv2", "densenet121"), default="mobilenetv2")
    parser.add_argument("--cut", action="store_true", help="a model cut at each BatchNorm, whatever the memory")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import keras
    import numpy as np

    from cladec_cli import batchnorm, memory, runtime

    shape = (args.size, args.size, 3)
    if args.model == "densenet121":
        model = keras.applications.DenseNet121(weights=None, input_shape=shape, classes=10, classifier_activation=None)
        name = f"DenseNet121, {args.size}x{args.size}x3, untrained"
    else:
        model = keras.applications.MobileNetV2(weights=None, input_shape=shape, alpha=args.alpha, classes=10,
                                               classifier_activation=None)
        name = f"MobileNetV2 alpha {args.alpha:g}, {args.size}x{args.size}x3, untrained"
    if args.cut:
        memory.hold_limit = lambda: 0
    images = np.random.default_rng(0).random((args.images, args.size, args.size, 3), dtype=np.float32)
    model.predict(images[:512], batch_size=512, verbose=0)  # compiled before it is timed
    started = time.perf_counter()
    model.predict(images, batch_size=512, verbose=0)
    pass_s = time.perf_counter() - started
    started = time.perf_counter()
    layers = batchnorm.statistics_from_data(model, images)
    statistics_s = time.perf_counter() - started
    result = {"device": runtime.current_device().description, "backend": keras.backend.backend(),
              "model": name, "path": "cut at each BatchNorm" if args.cut else "as the tool chooses",
              "images": args.images, "batchnorm_layers": layers, "inference_pass_s": round(pass_s, 2),
              "statistics_from_data_s": round(statistics_s, 2), "ratio": round(statistics_s / pass_s, 1)}
    print(json.dumps(result, indent=1) if args.json else
          f"{result['model']}, {layers} BatchNorm layers, {args.images} images: statistics from data "
          f"{statistics_s:.1f} s against {pass_s:.1f} s for one inference pass ({result['ratio']}x)")


if __name__ == "__main__":
    main()
