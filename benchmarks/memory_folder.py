"""Peak memory of `cladec train-decoder` and `cladec evaluate` on a `folder:` dataset, which should
stream from disk.

Writes N PNG images (default 3000 of 64x64x3, 10 classes) into a temporary `folder:` dataset, saves an
untrained classifier with `cladec train-classifier --epochs 0`, then runs `cladec train-decoder` for one
epoch in a child process and reads that child's peak resident set size (`os.wait4`'s ru_maxrss). It
prints that beside the decoded float32 size of the dataset and the peak RSS of a process that only
imports TensorFlow, and beside a control run of the same command with `--limit` (at most that many
images per split), which shows the fixed cost of training. Streaming works when the peak stays well
below baseline + decoded size and hardly exceeds the control run's. Then it saves an untrained RefAE
(`train-refae --epochs 0`) and measures `cladec evaluate` with one epoch of Acc Eval the same way;
its peak should stay close to train-decoder's (the target: within 1.5 times).

    python benchmarks/memory_folder.py [--images 3000] [--size 64] [--layer -2] [--batch-size 128]
                                       [--control-limit 256] [--cache-codes auto] [--no-evaluate]
                                       [--keep DIR] [--json]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

MIB = 1024 * 1024


def write_folder(root, n_images, size, n_classes=10, seed=0):
    """`n_images` PNGs of size x size x 3, one sub-folder per class, each class a bright patch + noise."""
    rng = np.random.default_rng(seed)
    for i in range(n_images):
        label = i % n_classes
        image = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
        row, col = divmod(label, 4)
        step = size // 4
        image[row * step:(row + 1) * step, col * step:(col + 1) * step] = 230
        folder = Path(root) / f"class{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:06d}.png")


def peak_rss(command, env=None):
    """Run `command` and return (exit code, peak RSS in MiB, seconds, stderr tail) of that one child."""
    started = time.time()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    # Read stderr in full before waiting, so that a chatty child never blocks on a full pipe.
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024, time.time() - started, err.strip().splitlines()[-3:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--layer", default="-2")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--control-limit", type=int, default=256, help="--limit of the control run (0: none).")
    parser.add_argument("--cache-codes", default="auto", choices=["auto", "yes", "no"])
    parser.add_argument("--no-evaluate", action="store_true", help="Measure train-decoder only.")
    parser.add_argument("--keep", default=None, help="Write the dataset and models here and keep them.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args()

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cladec-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cladec = [sys.executable, "-m", "cladec_cli"]
    try:
        data = work / "images"
        if not data.exists():
            write_folder(data, args.images, args.size)
        on_disk = sum(p.stat().st_size for p in data.rglob("*.png")) / MIB
        decoded = args.images * args.size * args.size * 3 * 4 / MIB
        spec = f"folder:{data}"

        code, baseline, _, err = peak_rss([sys.executable, "-c", "import tensorflow"], env)
        assert code == 0, err
        classifier = work / "classifier.h5"
        if not classifier.exists():
            code, classifier_rss, _, err = peak_rss(cladec + ["train-classifier", "--dataset", spec, "--epochs", "0",
                                                              "--out", str(classifier), "-q"], env)
            assert code == 0, err
        decoder = work / "decoder.h5"
        train = cladec + ["train-decoder", "--classifier", str(classifier), "--layer", args.layer, "--epochs", "1",
                          "--batch-size", str(args.batch_size), "--cache-codes", args.cache_codes,
                          "--out", str(decoder), "--overwrite", "-q"]
        control_rss = None
        if args.control_limit:
            code, control_rss, _, err = peak_rss(train + ["--limit", str(args.control_limit)], env)
            assert code == 0, err
        code, train_rss, seconds, err = peak_rss(train, env)
        assert code == 0, err
        evaluate_rss = evaluate_seconds = None
        if not args.no_evaluate:
            refae = work / "refae.h5"
            code, _, _, err = peak_rss(cladec + ["train-refae", "--classifier", str(classifier), "--layer", args.layer,
                                                 "--epochs", "0", "--out", str(refae), "--overwrite", "-q"], env)
            assert code == 0, err
            code, evaluate_rss, evaluate_seconds, err = peak_rss(
                cladec + ["evaluate", "--classifier", str(classifier), "--decoder", str(decoder), "--refae", str(refae),
                          "--eval-epochs", "1", "--batch-size", str(args.batch_size),
                          "--out", str(work / "metrics.json"), "--overwrite", "-q"], env)
            assert code == 0, err
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    figures = {
        "images": args.images, "image_shape": [args.size, args.size, 3], "layer": args.layer,
        "batch_size": args.batch_size, "cache_codes": args.cache_codes,
        "png_on_disk_mib": round(on_disk, 1),
        "decoded_float32_mib": round(decoded, 1),
        "baseline_import_tensorflow_peak_rss_mib": round(baseline, 1),
        "train_decoder_peak_rss_mib": round(train_rss, 1),
        "train_decoder_above_baseline_mib": round(train_rss - baseline, 1),
        "baseline_plus_decoded_mib": round(baseline + decoded, 1),
        "train_decoder_seconds": round(seconds, 1),
        "control_limit": args.control_limit,
        "control_peak_rss_mib": None if control_rss is None else round(control_rss, 1),
        "evaluate_peak_rss_mib": None if evaluate_rss is None else round(evaluate_rss, 1),
        "evaluate_seconds": None if evaluate_seconds is None else round(evaluate_seconds, 1),
        "evaluate_over_train_decoder": None if evaluate_rss is None else round(evaluate_rss / train_rss, 2),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"dataset: {args.images} PNG images {args.size}x{args.size}x3, {on_disk:.1f} MiB on disk, "
          f"{decoded:.1f} MiB decoded as float32")
    print(f"peak RSS, python -c 'import tensorflow':   {baseline:8.1f} MiB")
    print(f"peak RSS, cladec train-decoder, 1 epoch:   {train_rss:8.1f} MiB "
          f"({train_rss - baseline:+.1f} MiB over the baseline, {seconds:.0f} s)")
    if control_rss is not None:
        print(f"{f'peak RSS, the same with --limit {args.control_limit}:':<42} {control_rss:8.1f} MiB "
              f"(fixed cost of training; the full run adds {train_rss - control_rss:+.1f} MiB)")
    print(f"baseline + decoded dataset:                {baseline + decoded:8.1f} MiB")
    if evaluate_rss is not None:
        print(f"peak RSS, cladec evaluate, 1 Acc Eval epoch: {evaluate_rss:6.1f} MiB "
              f"({evaluate_rss / train_rss:.2f} x train-decoder's, {evaluate_seconds:.0f} s)")


if __name__ == "__main__":
    main()
