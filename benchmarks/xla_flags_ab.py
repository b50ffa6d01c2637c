"""cladec's training under several `XLA_FLAGS` settings, each in a fresh process (XLA reads its flags once,
at start-up), taking turns: seconds per epoch of the fused decoders of layers -1 to -4, the layer -1
decoder and the classifier, as `train-decoder` and `train-classifier` train them.

    python benchmarks/xla_flags_ab.py OUT.json [--variant NAME=FLAGS ...] [--cases fused,decoder,classifier]
        [--dataset fashion_mnist] [--limit 16384] [--epochs 3] [--rounds 2]

Without `--variant` it compares XLA's defaults, CUDA graphs (command buffers) off, and command buffers
for fusions, cuBLAS, cuDNN, custom calls, loops and conditionals with graphs of any size: on a GPU a fused decoder step runs about 290 kernels
and the GPU waited between them for about 40 % of the step. Each process adds its variant's flags to the
`XLA_FLAGS` it inherits. The first process trains a classifier for one epoch; the others load it. A
case's steady epoch is the fastest after its first. One JSON line per process and case, and OUT.json
(written after each process) with the rows and each variant's best epoch per case. A process that fails
is recorded with the end of its error output, the others still run, and the exit status is then 1.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMAND_BUFFERS = "FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL"
VARIANTS = {
    "default": "",
    "graphs-off": "--xla_gpu_enable_command_buffer=",
    "graphs-all": f"--xla_gpu_enable_command_buffer={COMMAND_BUFFERS} --xla_gpu_graph_min_graph_size=1",
}
CASES = ("fused", "decoder", "classifier")


def variant(text):
    """NAME=FLAGS as (name, flags)."""
    name, sep, flags = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=FLAGS, got {text!r}")
    return name, flags


def child(args):
    """Time the cases in this process (started with the variant's XLA_FLAGS); print one JSON line each."""
    from cladec_cli import runtime
    from cladec_cli.benchmark import (Bench, classifier_case, decoder_case, fastest_steady_epoch, fused_case,
                                      script_dataset)
    from cladec_cli.training import TrainSettings

    flags = os.environ.get("XLA_FLAGS", "")  # as XLA reads them: cladec may add its own later
    dataset = script_dataset(args.dataset, args.limit)
    settings = TrainSettings(epochs=1, verbose=0, overwrite=True)
    classifier, provenance = Bench(dataset, settings, args.work).classifier()  # every process uses this one
    own = Path(args.work) / f"process-{os.getpid()}"
    own.mkdir()
    bench = Bench(dataset, settings, own)
    builders = {"fused": lambda: fused_case(bench, classifier, provenance),
                "decoder": lambda: decoder_case(bench, classifier, provenance, -1, 0.0),
                "classifier": lambda: classifier_case(bench)}
    for name in args.cases.split(","):
        seconds = fastest_steady_epoch(builders[name]().tool, args.epochs)
        print(json.dumps({"case": name, "s_per_epoch": seconds, "images_per_s": len(dataset.train) / seconds,
                          "device": runtime.current_device().description,
                          "xla_flags": flags}), flush=True)


def run_child(args, flags, work):
    """The JSON lines a child process printed, run with `flags` added to XLA_FLAGS, or one line with the
    end of its error output when it failed."""
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()}
    command = [sys.executable, __file__, "--child", "--work", str(work), "--cases", args.cases,
               "--dataset", args.dataset, "--limit", str(args.limit), "--epochs", str(args.epochs)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return [{"error": f"exit {done.returncode} with XLA_FLAGS={env['XLA_FLAGS']!r}: {done.stderr[-3000:]}"}]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?")
    parser.add_argument("--variant", action="append", type=variant, default=None,
                        help="NAME=FLAGS, repeated (default: " + ", ".join(VARIANTS) + ")")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--limit", type=int, default=16384)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch compiles)")
    if unknown := [c for c in args.cases.split(",") if c not in CASES]:
        parser.error(f"unknown case {unknown[0]!r}; choose from {', '.join(CASES)}")
    if args.child:
        child(args)
        return 0
    if args.out is None:
        parser.error("the following arguments are required: out")
    variants = dict(args.variant) if args.variant else VARIANTS
    if args.variant and len(variants) < len(args.variant):
        parser.error("two variants have the same name")
    result = {"variants": variants, "xla_flags_inherited": os.environ.get("XLA_FLAGS", ""), "dataset": args.dataset,
              "limit": args.limit, "epochs": args.epochs, "rows": [], "best_s_per_epoch": {}}
    with tempfile.TemporaryDirectory(prefix="cladec-xla-flags-") as work:
        for round_ in range(args.rounds):
            for name, flags in variants.items():
                start = time.perf_counter()
                for row in run_child(args, flags, Path(work)):
                    row = {"variant": name, "round": round_, **row, "process_s": time.perf_counter() - start}
                    print(json.dumps(row), flush=True)
                    result["rows"].append(row)
                timed = [r for r in result["rows"] if "error" not in r]
                result["best_s_per_epoch"] = {
                    v: {c: min(r["s_per_epoch"] for r in timed if r["variant"] == v and r["case"] == c)
                        for c in {r["case"] for r in timed if r["variant"] == v}}
                    for v in {r["variant"] for r in timed}}
                Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result["best_s_per_epoch"]), flush=True)
    return 1 if any("error" in r for r in result["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
