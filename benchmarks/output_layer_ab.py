"""The decoder's last convolution in float32 against the same layer in the mixed policy's compute dtype
(cladec's default), timed through cladec's own training: the four fused decoders of layers -1 to -4,
the layer -1 decoder and the layer -1 RefAE, as `train-decoder` and `train-refae` train them.

    python benchmarks/output_layer_ab.py OUT.json [--dataset fashion_mnist] [--limit 16384]
        [--epochs 3] [--rounds 2] [--precision auto|bfloat16|float16]

Both variants give float32 reconstructions and sum their squared errors in float32; only the last
convolution's arithmetic differs (under float32, as `auto` gives on a CPU, the two are the same). A
classifier trained for one epoch gives the codes. The variants take turns, `--rounds` times; a run's
steady epoch is the fastest after its first. One JSON line per run, and OUT.json at the end.
"""

import argparse
import contextlib
import functools
import json
import sys
import tempfile
import time
from unittest import mock

from cladec_cli import cladec, runtime
from cladec_cli.benchmark import Bench, decoder_case, fastest_steady_epoch, fused_case, refae_case, script_dataset
from cladec_cli.decoder import build_decoder
from cladec_cli.training import TrainSettings

VARIANTS = {"float32": "float32", "compute": None}


@contextlib.contextmanager
def decoders_built_with(output_dtype):
    """cladec builds every decoder (ClaDec's and RefAE's) with its last convolution in `output_dtype`."""
    with mock.patch.object(cladec, "build_decoder", functools.partial(build_decoder, output_dtype=output_dtype)):
        yield


def time_run(case, epochs, output_dtype):
    """Steady seconds per epoch of `case`'s cladec side with decoders built with `output_dtype`."""
    with decoders_built_with(output_dtype):
        return fastest_steady_epoch(case.tool, epochs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--limit", type=int, default=16384)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", choices=["auto", "bfloat16", "float16"], default="auto")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch compiles)")
    dataset = script_dataset(args.dataset, args.limit)
    settings = TrainSettings(epochs=1, verbose=0, overwrite=True, precision=args.precision)
    setup = settings.runtime()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cladec-output-layer-") as work:
        bench = Bench(dataset, settings, work)
        classifier, provenance = bench.classifier()
        cases = {"layers -1 to -4 fused": fused_case(bench, classifier, provenance),
                 "decoder layer -1": decoder_case(bench, classifier, provenance, -1, 0.0),
                 "refae layer -1": refae_case(bench, classifier, provenance, -1)}
        for round_ in range(args.rounds):
            for name, case in cases.items():
                for variant, dtype in VARIANTS.items():
                    start = time.perf_counter()
                    seconds = time_run(case, args.epochs, dtype)
                    row = {"case": name, "output_layer": variant, "round": round_, "s_per_epoch": seconds,
                           "images_per_s": len(dataset.train) / seconds, "run_s": time.perf_counter() - start}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    summary = {}
    for name in cases:
        best = {v: min(r["s_per_epoch"] for r in rows if r["case"] == name and r["output_layer"] == v)
                for v in VARIANTS}
        summary[name] = {**{f"{v}_s_per_epoch": s for v, s in best.items()},
                         "compute_speedup": best["float32"] / best["compute"]}
    result = {**setup.provenance(), "device": runtime.current_device().description, "dataset": dataset.name,
              "train_images": len(dataset.train), "batch_size": settings.batch_size, "epochs": args.epochs,
              "rows": rows, "summary": summary}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
