"""Aggregate training speed of several processes sharing one device: N processes at once each train the
fused four-layer ClaDec decoders (`train-decoder --layer -1,-2,-3,-4`) of one classifier, or one
classifier (`--what classifier`). The measurement behind `reproduce --workers N` on one GPU.

    python benchmarks/concurrent_trainings.py OUT.json [--what decoders|classifier] [--procs 1,2,4]
                                                        [--epochs 4] [--limit N]

Each process reports its epochs' wall-clock times; its first epoch (compilation) is left out and the
median of the others is its seconds per epoch. The aggregate images per second add up the processes'
rates; `overlap` is the share of the mean timed span during which all of them were timing at once (near
1: the rates were measured side by side). `round_s` is the round's wall time from starting the
processes to the last one's exit, start-up and compilation included.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Processes that share a GPU must not take all its memory up front (as `reproduce --workers` does).
SHARED_DEVICE_ENV = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
LAYERS = [-1, -2, -3, -4]


def dataset(limit):
    from cladec_cli.benchmark import script_dataset

    return script_dataset(limit=limit)


def child(args):
    """Train once with an epoch timer; print one JSON line with the epochs' wall-clock marks."""
    from cladec_cli.benchmark import EpochTimer
    from cladec_cli.classifier import load_classifier, train_classifier
    from cladec_cli.cladec import train_decoders
    from cladec_cli.training import TrainSettings

    data = dataset(args.limit)
    work = Path(args.work)
    timer = EpochTimer()
    settings = TrainSettings(epochs=args.epochs, verbose=0, overwrite=True, extra_callbacks=[timer])
    if args.what == "classifier":
        train_classifier(data, settings, work / f"classifier-{os.getpid()}.h5")
    else:
        classifier, provenance = load_classifier(work / "classifier.h5")
        outs = [work / f"d{os.getpid()}-{i}.h5" for i in range(len(LAYERS))]
        train_decoders(classifier, provenance, data, LAYERS, 0.0, settings, outs, cache_codes="no")
    # The timer's clock is this process's own; the processes are compared on the wall clock.
    to_wall_clock = time.time() - time.perf_counter()
    marks = [wall + to_wall_clock for wall, _ in timer.fits[0]]
    print(json.dumps({"marks": marks, "train_images": len(data.train)}), flush=True)


def command(args, *extra):
    return [sys.executable, __file__, "--child", "--what", args.what, "--epochs", str(args.epochs),
            "--work", args.work, *(["--limit", str(args.limit)] if args.limit else []), *extra]


def run_round(args, processes):
    """Start `processes` children at once; their reports and the round's wall time."""
    env = {**os.environ, **SHARED_DEVICE_ENV}
    start = time.time()
    children = []
    try:
        for _ in range(processes):
            children.append(subprocess.Popen(command(args), stdout=subprocess.PIPE, text=True, env=env))
        outputs = [process.communicate()[0] for process in children]
    finally:
        for process in children:
            if process.poll() is None:
                process.kill()
    failed = [process.returncode for process in children if process.returncode]
    if failed:
        raise SystemExit(f"{len(failed)} of {processes} training processes failed (exit {failed[0]})")
    return [json.loads(out.strip().splitlines()[-1]) for out in outputs], time.time() - start


def summary(reports, round_s):
    """One result row from the children's reports."""
    from cladec_cli.benchmark import steady_seconds

    per_process = [steady_seconds([np.diff(r["marks"])])[1] for r in reports]
    starts, ends = [r["marks"][1] for r in reports], [r["marks"][-1] for r in reports]
    mean_span = statistics.mean(e - s for s, e in zip(starts, ends))
    overlap = max(0.0, min(ends) - max(starts)) / mean_span
    return {"processes": len(reports), "s_per_epoch": per_process,
            "aggregate_images_per_s": sum(r["train_images"] / s for r, s in zip(reports, per_process)),
            "overlap": round(overlap, 3), "round_s": round(round_s, 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?")
    parser.add_argument("--what", choices=["decoders", "classifier"], default="decoders")
    parser.add_argument("--procs", default="1,2,4")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs < 3:
        parser.error("--epochs must be at least 3: the first is left out and a median needs two")
    if args.child:
        return child(args)
    if not args.out:
        parser.error("the results JSON to write is required")
    os.environ.update(SHARED_DEVICE_ENV)
    from cladec_cli import runtime

    with tempfile.TemporaryDirectory() as work:
        args.work = work
        if args.what == "decoders":
            subprocess.run([sys.executable, "-m", "cladec_cli", "train-classifier", "--dataset", "fashion_mnist",
                            *(["--limit", str(args.limit)] if args.limit else []), "--epochs", "1", "--quiet",
                            "--out", str(Path(work) / "classifier.h5")], check=True)
        rows = []
        for processes in [int(p) for p in args.procs.split(",")]:
            row = summary(*run_round(args, processes))
            if rows:
                row["speedup_vs_first"] = round(row["aggregate_images_per_s"] / rows[0]["aggregate_images_per_s"], 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"what": args.what, "layers": LAYERS if args.what == "decoders" else None, "epochs": args.epochs,
              "limit": args.limit, "device": runtime.current_device().description, "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
