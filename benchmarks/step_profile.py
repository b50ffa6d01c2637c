"""Where a steady training epoch's time goes on the device, cladec against its plain Keras peer: kernels a
step, kernel time a step, and how much of the epoch the device was busy, from a JAX profiler trace.

    KERAS_BACKEND=jax python benchmarks/step_profile.py OUTDIR [--limit 16384] [--epochs 3]
        [--cases classifier,decoder,fused,refae,acc_eval] [--top 12] [--traces DIR]

Each case is a row of `cladec benchmark` (`cladec_cli.benchmark`): `train-classifier`, `train-decoder
--layer -1 --alpha 0`, the fused `--layer -1,-2,-3,-4` run and `train-refae --layer -1`; `acc_eval`
is a cell's two Acc Eval classifiers trained stacked (`--stack-models`) against side by side. Each side
(cladec, and its peer where the row has one) trains for `--epochs` epochs; the last epoch
is traced with `jax.profiler` and read back with `jax.profiler.ProfileData`. The activity counted is
that of the device planes' stream lines (kernels and copies); on a CPU, that of the host's XLA threads,
which is enough to try the script out but says little. On a GPU without a device plane in its trace
(CUPTI missing) the script stops with an error instead. Busy time is the union of the activity
intervals, so overlapping streams count once; `busy_fraction` is busy time over the traced epoch's wall
time. The trace leaves out Python function calls, and XLA keeps its CUDA graphs while tracing (it drops
them by default), so the traced epoch runs as the others do; it is reported beside the untraced ones
before it all the same. Writes OUTDIR/step-profile.json; with `--traces DIR`, keeps
each trace under DIR/<case>-<side>/ (TensorBoard's profile plugin or xprof open them).
"""

import argparse
import dataclasses
import glob
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

# Set before JAX starts: XLA reads its flags once.
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_enable_command_buffers_during_profiling=true".strip()

import keras  # noqa: E402

from cladec_cli import runtime  # noqa: E402
from cladec_cli.architectures import build_classifier  # noqa: E402
from cladec_cli.benchmark import (Bench, Case, classifier_case, decoder_case, fused_case, refae_case,  # noqa: E402
                                  script_dataset, steady_seconds, EpochTimer)
from cladec_cli.flops import training_flops  # noqa: E402
from cladec_cli.metrics import acc_evals  # noqa: E402
from cladec_cli.training import TrainSettings  # noqa: E402

CASES = ("classifier", "decoder", "fused", "refae", "acc_eval")


class TracedEpoch(keras.callbacks.Callback):
    """Traces epoch `epoch` (0-based) of every `fit` it sees into a folder of its own under `root`."""

    def __init__(self, epoch, root):
        super().__init__()
        self.epoch, self.root, self.folders, self.seconds = epoch, Path(root), [], []
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            import jax

            options = jax.profiler.ProfileOptions()
            options.python_tracer_level = 0  # Python calls would slow a per-batch loop more than a chunked one
            self.folders.append(self.root / f"fit{len(self.folders)}")
            jax.profiler.start_trace(str(self.folders[-1]), profiler_options=options)
            self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        # Keras has turned the epoch's logs into numbers by now, so the device has finished its steps.
        if epoch == self.epoch and self._start is not None:
            import jax

            self.seconds.append(time.perf_counter() - self._start)
            jax.profiler.stop_trace()
            self._start = None


def activity(profile):
    """(plane name, [(start_ns, duration_ns, name)]) of a trace: the events of the first device plane's
    stream lines, or, without a device plane, the events of the host's XLA threads."""
    for plane_prefix, line_prefix in (("/device:", "Stream"), ("/host:", "tf_XLA")):
        for plane in profile.planes:
            if plane.name.startswith(plane_prefix) and (events := _events(plane, line_prefix)):
                return plane.name, events
    return None, []


def _events(plane, line_prefix):
    return [(e.start_ns, e.duration_ns, e.name) for line in plane.lines if line.name.startswith(line_prefix)
            for e in line.events if e.duration_ns > 0]


def busy_ns(events):
    """Length of the union of the events' intervals."""
    total, end = 0.0, None
    for start, duration, _ in sorted(events):
        stop = start + duration
        if end is None or start >= end:
            total += duration
            end = stop
        elif stop > end:
            total += stop - end
            end = stop
    return total


def line_totals(profile):
    """Every plane's lines: events and milliseconds, so that a trace laid out otherwise still reads."""
    return {plane.name: {line.name: {"events": len(events := list(line.events)),
                                     "ms": sum(e.duration_ns for e in events) / 1e6} for line in plane.lines}
            for plane in profile.planes if plane.lines}


def summarize(profile, steps, epoch_s, top=12, need_device=False):
    """What one traced epoch of `steps` optimizer steps and `epoch_s` wall seconds did on the device;
    with `need_device`, a trace without a device plane is an error."""
    plane, events = activity(profile)
    if need_device and not (plane or "").startswith("/device:"):
        raise SystemExit("the trace has no device activity (is CUPTI installed?); planes: "
                         + ", ".join(p.name for p in profile.planes))
    by_name = defaultdict(lambda: [0, 0.0])
    for _, duration, name in events:
        by_name[name][0] += 1
        by_name[name][1] += duration
    kernel_ns = sum(duration for _, duration, _ in events)
    busy = busy_ns(events)
    ranked = sorted(by_name.items(), key=lambda item: -item[1][1])[:top]
    return {
        "plane": plane, "steps": steps, "traced_epoch_s": epoch_s,
        "events": len(events), "events_per_step": len(events) / steps,
        "activity_ms_per_step": kernel_ns / 1e6 / steps, "busy_ms_per_step": busy / 1e6 / steps,
        "wall_ms_per_step": 1000 * epoch_s / steps, "busy_fraction": busy / 1e9 / epoch_s if epoch_s else None,
        "top": [{"name": name[:160], "count": count, "ms": ns / 1e6, "share_of_activity": ns / kernel_ns}
                for name, (count, ns) in ranked],
        "lines": line_totals(profile),
    }


def read_trace(folder):
    """The ProfileData of the one trace written under `folder`."""
    from jax.profiler import ProfileData

    paths = sorted(glob.glob(str(Path(folder) / "**" / "*.xplane.pb"), recursive=True))
    if not paths:
        raise SystemExit(f"no trace was written under {folder}")
    return ProfileData.from_file(paths[-1])


def profile_side(run, epochs, steps, folder, need_device=False, top=12):
    """Train one side for `epochs` epochs, tracing the last; its summary (one per `fit`, for a side that
    fits several times) with the untraced epochs' times."""
    timer, traced = EpochTimer(), TracedEpoch(epochs - 1, folder)
    run(epochs, [timer, traced])
    untraced = timer.epoch_seconds()[:-1]
    return {"untraced_epoch_s": untraced, "steady_untraced_epoch_s": steady_seconds([untraced])[0] if len(untraced) > 1
            else None, "fits": [summarize(read_trace(f), steps, s, top, need_device)
                                for f, s in zip(traced.folders, traced.seconds)]}


def acc_eval_case(bench, classifier):
    """Two methods' Acc Eval classifiers (both on the training images) trained stacked, as
    `--stack-models` trains them, against side by side, as they train by default."""
    train, test = bench.dataset.train, bench.dataset.test

    def side(stack):
        def run(epochs, callbacks):
            settings = dataclasses.replace(bench.tool_settings(epochs, callbacks), stack_models=stack)
            acc_evals(classifier, {"a": train, "b": train}, {"a": test, "b": test}, settings)
        return run

    work = 2 * training_flops(build_classifier(bench.dataset.image_shape, bench.dataset.n_classes))
    return Case("2 Acc Eval classifiers, --stack-models", side(True), side(False), work, peer_name="side by side")


def cases_for(bench, names):
    """The benchmark cases named, the classifier's first: it is built only after the classifier's own
    case has run (which trains the classifier the others use), or after a one-epoch classifier."""
    if "classifier" in names:
        yield "classifier", classifier_case(bench)
    classifier, provenance = bench.classifier()
    builders = {"decoder": lambda: decoder_case(bench, classifier, provenance, -1, 0.0),
                "fused": lambda: fused_case(bench, classifier, provenance),
                "refae": lambda: refae_case(bench, classifier, provenance, -1),
                "acc_eval": lambda: acc_eval_case(bench, classifier)}
    for name in names:
        if name != "classifier":
            yield name, builders[name]()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--limit", type=int, default=16384)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--traces", default=None, help="keep the traces in this folder")
    args = parser.parse_args()
    if keras.backend.backend() != "jax":
        parser.error("reads JAX profiler traces: run it under Keras' JAX backend (KERAS_BACKEND=jax)")
    if args.epochs < 3:
        parser.error("--epochs must be at least 3: the first compiles, the last is traced")
    from jax.profiler import ProfileData  # noqa: F401  (refuse now, not after the first training)
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    if unknown := [n for n in names if n not in CASES]:
        parser.error(f"unknown case {unknown[0]!r}; choose from {', '.join(CASES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = script_dataset(limit=args.limit)
    settings = TrainSettings(epochs=1, verbose=0, overwrite=True)
    result = {**settings.runtime().provenance(), "device": runtime.current_device().description,
              "train_images": len(dataset.train), "batch_size": settings.batch_size, "epochs": args.epochs,
              "cases": []}
    steps = -(-len(dataset.train) // settings.batch_size)
    on_gpu = runtime.current_device().is_gpu
    with tempfile.TemporaryDirectory(prefix="cladec-profile-") as work:
        traces = Path(args.traces) if args.traces else Path(work) / "traces"
        bench = Bench(dataset, settings, work)
        for name, case in cases_for(bench, names):
            row = {"case": name, "command": case.name, "peer_name": case.peer_name}
            sides = [("cladec", case.tool)] + ([("peer", case.peer)] if name != "fused" else [])
            for side, run in sides:
                row[side] = profile_side(run, args.epochs, steps, traces / f"{name}-{side}", on_gpu, args.top)
                first = row[side]["fits"][0]
                print(json.dumps({"case": name, "side": side, **{k: first[k] for k in ("plane",
                    "events_per_step", "activity_ms_per_step", "busy_ms_per_step", "wall_ms_per_step",
                    "busy_fraction")}}), flush=True)
            result["cases"].append(row)
            (out / "step-profile.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
