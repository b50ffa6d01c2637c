"""cladec's training commands at several steps per execution, taking turns, on this machine's default
device (meant for CPUs under TensorFlow, where chunks of batches run in a `tf.while_loop`).

Each round trains, for every case (the classifier, then the one-layer rows of `cladec benchmark`), one
run per steps-per-execution value, one after another. Epochs after the first are kept; the fastest and
quartiles of their wall-clock and CPU seconds are printed per case and value, and all of them written
to OUT.json.

    python benchmarks/steps_cpu_ab.py [--rounds 3] [--epochs 3] [--limit 10000] [--steps 1,16]
        [--cases classifier,layers] OUT.json
"""
import argparse
import dataclasses
import json
import tempfile

from cladec_cli import benchmark as b
from cladec_cli.training import TrainSettings


def quartiles(values):
    ordered = sorted(values)
    return {"min": ordered[0], "q1": ordered[len(ordered) // 4], "median": ordered[len(ordered) // 2]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=10000)
    parser.add_argument("--steps", default="1,16")
    parser.add_argument("--cases", default="classifier,layers")
    args = parser.parse_args()
    steps = [int(v) for v in args.steps.split(",")]
    wanted = args.cases.split(",")
    base = TrainSettings(batch_size=128, lr=2e-3, seed=0, resume=False, tensorboard=None, verbose=0)
    data = b.script_dataset(limit=args.limit)
    b.start(base)
    epochs = {}
    with tempfile.TemporaryDirectory(prefix="cladec-steps-") as work_dir:
        benches = {n: b.Bench(data, dataclasses.replace(base, steps_per_execution=n), work_dir) for n in steps}
        classifier, provenance = benches[steps[0]].classifier()
        cases = {n: ([b.classifier_case(bench)] if "classifier" in wanted else [])
                 + ([c for c in b.layer_cases(bench, classifier, provenance) if c.peer_name == b.PLAIN]
                    if "layers" in wanted else [])
                 for n, bench in benches.items()}
        for r in range(args.rounds):
            for i in range(len(cases[steps[0]])):
                for n in steps:
                    case, timer = cases[n][i], b.EpochTimer()
                    case.tool(args.epochs, [timer])
                    kept = epochs.setdefault(case.name, {}).setdefault(str(n), {"wall": [], "cpu": []})
                    kept["wall"] += timer.epoch_seconds()[1:]
                    kept["cpu"] += timer.epoch_seconds(clock=1)[1:]
            print(f"round {r + 1} of {args.rounds} done", flush=True)
    summary = {name: {n: {clock: quartiles(v) for clock, v in sides.items()} for n, sides in by_steps.items()}
               for name, by_steps in epochs.items()}
    for name, by_steps in summary.items():
        for n, clocks in by_steps.items():
            w, c = clocks["wall"], clocks["cpu"]
            print(f"{name:40s} steps {n:>3s}  wall min {w['min']:.3f} q1 {w['q1']:.3f} median {w['median']:.3f}"
                  f"  cpu min {c['min']:.3f} q1 {c['q1']:.3f} median {c['median']:.3f}")
    with open(args.out, "w") as f:
        json.dump({"device": b.runtime.current_device().description, "cpu": b.cpu_name(), "images": len(data.train),
                   "epochs": args.epochs, "rounds": args.rounds, "summary": summary, "epoch_seconds": epochs},
                  f, indent=1)


if __name__ == "__main__":
    main()
