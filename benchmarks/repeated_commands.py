"""Wall time of cladec commands run again and again in fresh processes, as a batch script runs them, for
one or more source trees taking turns: what a process start costs once compiled programs may be kept.

    python benchmarks/repeated_commands.py OUT.json --tree before=/path/to/checkout --tree after=. \\
        [--calls 3] [--rounds 2] -- COMMAND ARGS... [--- COMMAND ARGS...]

Each command (`cladec` subcommand and its options; `---` separates several) runs `--calls` times in a
row per tree and round, each call a new `python -m cladec_cli` process started in that tree (so its
`cladec_cli` is the one imported), with `{out}` in the arguments replaced by a fresh output path. Every
tree and round starts from an empty compilation cache of its own ($XDG_CACHE_HOME set to a fresh folder,
$JAX_COMPILATION_CACHE_DIR unset), so the first call of a round compiles and the later ones may find
what it kept. The trees take turns, in alternating order from round to round. Runs under the Keras
backend of $KERAS_BACKEND.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def split_commands(words):
    """['explain', '--x', '---', 'evaluate'] -> [['explain', '--x'], ['evaluate']]."""
    commands, current = [], []
    for word in words:
        if word == "---":
            commands.append(current)
            current = []
        else:
            current.append(word)
    commands.append(current)
    return [c for c in commands if c]


def turn_order(trees, round_index):
    """The trees in the given order in even rounds, reversed in odd ones."""
    return list(trees) if round_index % 2 == 0 else list(reversed(trees))


def call(tree, command, cache_home, scratch):
    """Seconds one fresh process took to run `command` from `tree`."""
    out = Path(tempfile.mkdtemp(dir=scratch)) / "out"
    args = [word.replace("{out}", str(out)) for word in command]
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(cache_home)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cladec_cli", *args], cwd=tree, env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"{' '.join(args)} failed in {tree}: {last}")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--tree", action="append", required=True, help="NAME=PATH of a checkout")
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    trees = dict(t.split("=", 1) for t in args.tree)
    commands = split_commands(args.command)
    times = {name: {" ".join(c): [] for c in commands} for name in trees}
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(args.rounds):
            for name in turn_order(trees, round_index):
                cache_home = Path(tempfile.mkdtemp(dir=scratch))
                for command in commands:
                    seconds = [call(Path(trees[name]).resolve(), command, cache_home, scratch)
                               for _ in range(args.calls)]
                    times[name][" ".join(command)].append(seconds)
                    print(f"round {round_index + 1} {name:>8}: {' '.join(command)[:60]:60} "
                          + " ".join(f"{s:6.2f}" for s in seconds), flush=True)
    summary = {name: {command: {"first_call_median_s": statistics.median(r[0] for r in rounds),
                                "later_calls_median_s": statistics.median(s for r in rounds for s in r[1:])}
                      for command, rounds in by_command.items()}
               for name, by_command in times.items()}
    record = {"backend": os.environ.get("KERAS_BACKEND", "tensorflow"), "machine": platform.processor() or
              platform.machine(), "cores": os.cpu_count(), "calls": args.calls, "rounds": args.rounds,
              "trees": trees, "seconds": times, "summary": summary,
              "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    sys.exit(main())
