"""The full Table II protocol's wall time (10 runs of 64 epochs), projected from short reproductions
measured on this machine: what a run costs once programs are compiled, and what the first run adds.

    python benchmarks/protocol_projection.py OUTDIR [--epochs 1,4] [--runs 2] [--limit N]
        [--full-runs 10] [--full-epochs 64] [--flags "..."]

For each value of `--epochs` it runs `cladec reproduce table2 --runs R --epochs E` in a fresh process
(into OUTDIR/e<E>), all with one JAX compilation cache, fresh in OUTDIR/jax-cache, and reads each
unit's seconds (classifier, fused decoders, fused RefAEs, each row's evaluation) from its log. A run
after the first finds its programs compiled (the Keras adapter traces again, XLA does not compile
again), so the last run of each reproduction gives a warm run's unit times. With two or more epoch
counts, each unit's warm seconds are fitted as a + b x epochs (least squares) and taken at
`--full-epochs`. The first reproduction's first run minus its last is what a cold cache adds; the
projection is that plus `--full-runs` warm runs. Process start-up and the report at the end are left
out (seconds). Settings that change a compiled program between epoch counts (the cosine schedule's
length) make each reproduction's first run compile again, which is why the last run is used.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

UNIT_LINE = re.compile(r"^run (\d+)/(\d+), \w+: (\S+)$")
SECONDS_LINE = re.compile(r"^  (?:trained .* in|evaluated in) ([\d.]+) s$")


def unit_kind(name):
    """A unit's name without its epoch count: 'classifier-e4' -> 'classifier', 'evaluate-c4-L-1-a0' ->
    'evaluate-L-1-a0'."""
    return re.sub(r"-[ce]\d+", "", name)


def unit_seconds(log_text):
    """[(run index from 0, unit kind, seconds)] of the units a reproduce log reports as done."""
    done, current = [], None
    for line in log_text.splitlines():
        if match := UNIT_LINE.match(line):
            current = (int(match.group(1)) - 1, unit_kind(match.group(3)))
        elif (match := SECONDS_LINE.match(line)) and current is not None:
            done.append((*current, float(match.group(1))))
            current = None
    return done


def per_run(done):
    """{run: {unit kind: seconds}}."""
    runs = {}
    for run, kind, seconds in done:
        runs.setdefault(run, {})[kind] = seconds
    return runs


def fit_line(epochs, seconds, at):
    """Least-squares a + b x epochs through the points, evaluated at `at`; (value, a, b)."""
    b, a = np.polyfit(np.asarray(epochs, float), np.asarray(seconds, float), 1)
    return float(a + b * at), float(a), float(b)


def project(measured, full_runs, full_epochs):
    """The projection from [{epochs, runs: {run: {kind: seconds}}}] (the first with a fresh cache)."""
    first = measured[0]["runs"]
    if len(first) < 2:
        raise SystemExit("each reproduction needs at least 2 runs: the last gives a warm run")
    warm = {m["epochs"]: m["runs"][max(m["runs"])] for m in measured}
    kinds = list(warm[measured[0]["epochs"]])
    cold_extra = sum(first[0].values()) - sum(first[max(first)].values())
    result = {"cold_extra_s": cold_extra, "warm_units": warm}
    if len(warm) < 2:
        return result
    units = {}
    for kind in kinds:
        points = [(e, units_at[kind]) for e, units_at in warm.items() if kind in units_at]
        value, fixed, per_epoch = fit_line([p[0] for p in points], [p[1] for p in points], full_epochs)
        units[kind] = {"seconds": value, "fixed_s": fixed, "per_epoch_s": per_epoch}
    warm_run = sum(u["seconds"] for u in units.values())
    return {**result, "units_at_full_epochs": units, "warm_run_s": warm_run,
            "protocol_s": cold_extra + full_runs * warm_run}


def reproduce(out, epochs, runs, limit, flags, env):
    """Run one reproduction; return its log text and wall seconds."""
    command = [sys.executable, "-m", "cladec_cli", "reproduce", "table2", "--runs", str(runs), "--epochs",
               str(epochs), "--out", str(out / f"e{epochs}"), *flags]
    if limit:
        command += ["--limit", str(limit)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - started
    (out / f"e{epochs}.log").write_text(done.stdout)
    if done.returncode != 0:
        raise SystemExit(f"reproduce --epochs {epochs} failed ({done.returncode}): see {out / f'e{epochs}.log'}")
    return done.stdout, wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--epochs", default="1,4")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--full-runs", type=int, default=10)
    parser.add_argument("--full-epochs", type=int, default=64)
    parser.add_argument("--flags", default="", help="extra reproduce options, as one string")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        parser.error(f"{out} is not empty: the first reproduction needs a fresh compilation cache")
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(out / "jax-cache")}
    measured, device = [], None
    for epochs in [int(e) for e in args.epochs.split(",")]:
        log, wall = reproduce(out, epochs, args.runs, args.limit, args.flags.split(), env)
        measured.append({"epochs": epochs, "wall_s": wall, "runs": per_run(unit_seconds(log))})
        device = device or next((line for line in log.splitlines() if line.startswith("device: ")), None)
        print(json.dumps(measured[-1]), flush=True)
        # Written after each reproduction, so a check stopped by its time budget keeps what finished.
        result = {"device": device, "settings": vars(args), "measured": measured,
                  **project(measured, args.full_runs, args.full_epochs)}
        (out / "projection.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("cold_extra_s", "warm_run_s", "protocol_s") if k in result}))


if __name__ == "__main__":
    sys.exit(main())
