"""The full Table II protocol's wall time (10 runs of 64 epochs), projected from one short reproduction
measured on this machine: what a run costs once its programs are compiled, and what the first run adds.

    python benchmarks/protocol_projection.py OUTDIR [--epochs 3] [--runs 2] [--limit N]
        [--full-runs 10] [--full-epochs 64] [--flags "..."]

It runs `cladec reproduce table2 --runs R --epochs E` in a fresh process (into OUTDIR/table2, with a
fresh JAX compilation cache in OUTDIR/jax-cache) and reads its log: each unit's seconds (the classifier,
the fused decoders, the fused RefAEs, each row's evaluation with its Acc Eval classifiers) and, from
Keras' epoch lines, each of the unit's trainings' steady epoch (the median of epochs 2..E). A run after
the first finds its programs compiled, so the last run gives a warm run's units; each is carried to
`--full-epochs` by adding its steady epochs, and the warm run is their sum. The first run's units less
the same units of the last run are what a cold cache adds; the projection is that plus `--full-runs`
warm runs. Keras gives a step's time in whole seconds once it takes 1 s or more (`coarse_units` lists
the units where it did: a slow CPU, not a GPU's chunked steps of tens of milliseconds). Left out:
process start-up, the report at the end and what happens between units (loading a classifier, locks),
which `wall_s` less the units' sum shows.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

UNIT_LINE = re.compile(r"^run (\d+)/(\d+), \w+: (\S+)$")
SECONDS_LINE = re.compile(r"^  (?:trained .* in|evaluated in) ([\d.]+) s$")
FIT_START = re.compile(r"^Epoch 1/\d+$")
# Keras' line at the end of an epoch (verbose 2): "8/8 - 1s - 129ms/step - loss: ..."
EPOCH_LINE = re.compile(r"^(\d+)/\d+ - \d+s - (\d+)(us|ms|s)/step")
SECONDS_PER = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def unit_kind(name):
    """A unit's name without its epoch count: 'classifier-e4' -> 'classifier', 'evaluate-c4-L-1-a0' ->
    'evaluate-L-1-a0'."""
    return re.sub(r"-[ce]\d+", "", name)


def units_in(log_text):
    """[{run (from 0), kind, seconds, epoch_s, coarse}] of the units a reproduce log reports as done;
    `epoch_s` sums the steady epochs of the unit's trainings (None without epoch lines, or when a training
    ran fewer than 2 epochs); `coarse` says that Keras gave a steady epoch's time per step in whole
    seconds, so `epoch_s` is rounded that much."""
    done, current = [], None
    for line in log_text.splitlines():
        if match := UNIT_LINE.match(line):
            current = {"run": int(match.group(1)) - 1, "kind": unit_kind(match.group(3)), "fits": [],
                       "coarse": False}
        elif current is None:
            continue
        elif FIT_START.match(line):
            current["fits"].append([])
        elif (match := EPOCH_LINE.match(line)) and current["fits"]:
            steps, per_step, unit = match.groups()
            current["fits"][-1].append(int(steps) * int(per_step) * SECONDS_PER[unit])
            current["coarse"] |= unit == "s" and len(current["fits"][-1]) > 1
        elif match := SECONDS_LINE.match(line):
            fits = current.pop("fits")
            steady = [statistics.median(epochs[1:]) if len(epochs) > 1 else None for epochs in fits]
            done.append({**current, "seconds": float(match.group(1)),
                         "epoch_s": None if not steady or None in steady else sum(steady)})
            current = None
    return done


def project(units, full_runs, full_epochs, epochs):
    """The projection from `units_in`'s list for a reproduction of `epochs` epochs and 2 or more runs."""
    runs = {}
    for unit in units:
        runs.setdefault(unit["run"], []).append(unit)
    if len(runs) < 2:
        raise SystemExit("the reproduction finished fewer than 2 runs: the last one gives a warm run")
    first, last = runs[min(runs)], runs[max(runs)]
    if any(u["epoch_s"] is None for u in last):
        raise SystemExit("a warm unit has no steady epoch: reproduce with --epochs 2 or more")
    at_full = {u["kind"]: u["seconds"] + (full_epochs - epochs) * u["epoch_s"] for u in last}
    warm = {u["kind"]: u["seconds"] for u in last}
    cold_extra = sum(u["seconds"] - warm[u["kind"]] for u in first if u["kind"] in warm)
    warm_run = sum(at_full.values())
    return {"cold_extra_s": cold_extra, "warm_units_at_full_epochs": at_full, "warm_run_s": warm_run,
            "protocol_s": cold_extra + full_runs * warm_run,
            "coarse_units": [u["kind"] for u in last if u["coarse"]]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--full-runs", type=int, default=10)
    parser.add_argument("--full-epochs", type=int, default=64)
    parser.add_argument("--flags", default="", help="extra reproduce options, as one string")
    args = parser.parse_args()
    if args.runs < 2 or args.epochs < 2:
        parser.error("--runs and --epochs must be at least 2: a warm run, and a steady epoch")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        parser.error(f"{out} is not empty: the reproduction needs a fresh compilation cache")
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "cladec_cli", "reproduce", "table2", "--runs", str(args.runs),
               "--epochs", str(args.epochs), "--out", str(out / "table2"), *args.flags.split(),
               *(["--limit", str(args.limit)] if args.limit else [])]
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(out / "jax-cache")}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - started
    (out / "table2.log").write_text(done.stdout)
    if done.returncode != 0:
        raise SystemExit(f"reproduce failed ({done.returncode}): see {out / 'table2.log'}")
    units = units_in(done.stdout)
    device = next((line for line in done.stdout.splitlines() if line.startswith("device: ")), None)
    result = {"device": device, "settings": vars(args), "wall_s": wall,
              "units_s": sum(u["seconds"] for u in units), "units": units,
              **project(units, args.full_runs, args.full_epochs, args.epochs)}
    (out / "projection.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("wall_s", "units_s", "cold_extra_s", "warm_run_s", "protocol_s",
                                             "coarse_units")}))


if __name__ == "__main__":
    sys.exit(main())
