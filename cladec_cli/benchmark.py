"""Speed of cladec's training commands against their plain Keras equivalents, in one process.

Each case pairs a cladec run with its peer: the same layers trained with `model.fit` on NumPy arrays
at the same batch size, with the same optimizer and learning-rate schedule (Adam, by default with a
cosine decay over the run, as cladec trains), under the same device set-up (precision policy, XLA,
steps per execution and determinism, resolved once by `runtime.resolve_runtime`). They take turns
(cladec then peer, peer then cladec, ...) so that drift in the machine's speed hits both, and the two
runs of each turn are also compared with each other. An epoch runs from its start to the next epoch's
start (the last to the end of training), so callbacks and checkpoints count; the first epoch (tracing,
compilation) is left out and the fastest remaining epoch is reported. Achieved GFLOP/s credit both
sides with the peer model's counted training FLOPs (see `cladec_cli.flops`), and are compared with the
device's peak measured here by a large matrix product through `keras.ops`.
"""

import dataclasses
import math
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import keras
import numpy as np
from keras import ops

from cladec_cli import runtime
from cladec_cli.architectures import build_classifier
from cladec_cli.classifier import classification_loss, load_classifier, train_classifier
from cladec_cli.cladec import decoder_for, frozen_encoder, stacked, train_decoder, train_decoders
from cladec_cli.data.datasets import load_dataset
from cladec_cli.errors import UsageError
from cladec_cli.flops import training_flops
from cladec_cli.layers import resolve_layer
from cladec_cli.losses import sum_squared_error
from cladec_cli.refae import build_refae, train_refae
from cladec_cli.training import start

PLAIN = "plain Keras"


class EpochTimer(keras.callbacks.Callback):
    """Epoch durations of one or more `fit` calls, from one epoch's start to the next, in wall-clock
    seconds and in this process's CPU seconds (steadier than wall-clock time on a shared machine).

    It has no batch hooks, so Keras keeps dispatching steps asynchronously.
    """

    def __init__(self):
        super().__init__()
        self.fits = []

    def _mark(self):
        self.fits[-1].append((time.perf_counter(), time.process_time()))

    def on_train_begin(self, logs=None):
        self.fits.append([])

    def on_epoch_begin(self, epoch, logs=None):
        self._mark()

    def on_train_end(self, logs=None):
        self._mark()

    def epoch_seconds(self, clock=0):
        """Seconds of each epoch (clock 0: wall-clock, 1: CPU), summed over the fits (several fits stand
        for one run when a fused run is compared with separate ones)."""
        per_fit = [np.diff([mark[clock] for mark in marks]) for marks in self.fits if len(marks) > 1]
        if not per_fit:
            return []
        return [float(sum(times)) for times in zip(*per_fit)]


@dataclass
class Case:
    """One benchmark row: a cladec run and its peer, each `run(epochs, callbacks)`, and the work per image."""

    name: str
    tool: Callable
    peer: Callable
    flops_per_image: int
    peer_name: str = PLAIN


class Bench:
    """What every case shares: the data, the training settings, the device set-up and a scratch folder."""

    def __init__(self, dataset, settings, work_dir):
        self.dataset, self.settings, self.work_dir = dataset, settings, Path(work_dir)
        self.setup = settings.runtime()
        self.x, self.y = dataset.train.arrays()

    def tool_settings(self, epochs, callbacks):
        """The benchmark's settings for one cladec run: quiet, overwriting its scratch output, timed."""
        return dataclasses.replace(self.settings, epochs=epochs, verbose=0, overwrite=True, resume=False,
                                   tensorboard=None, announce=None, extra_callbacks=list(callbacks))

    def plain_fit(self, model, targets, loss, epochs, callbacks, loss_weights=None):
        """`fit` as a Keras user would write it, with the tool's device set-up and learning-rate schedule."""
        model.compile(optimizer=keras.optimizers.Adam(self.plain_rate(epochs)), loss=loss, loss_weights=loss_weights,
                      jit_compile=self.setup.xla, steps_per_execution=self.setup.steps_per_execution)
        model.fit(self.x, targets, batch_size=self.settings.batch_size, epochs=epochs, verbose=0,
                  callbacks=list(callbacks))

    def plain_rate(self, epochs):
        """Adam's learning rate for a plain run of `epochs` epochs: the settings' rate, decayed to 0 over the
        run by Keras' own cosine schedule where the settings train that way."""
        if self.settings.lr_schedule != "cosine":
            return self.settings.lr
        steps = epochs * math.ceil(len(self.x) / self.settings.batch_size)
        return keras.optimizers.schedules.CosineDecay(self.settings.lr, decay_steps=max(1, steps))

    def fresh(self):
        """The device set-up and seeds, applied before each run builds its models."""
        runtime.apply(self.setup)
        runtime.seed_everything(self.settings.seed)

    def path(self, name):
        return self.work_dir / name

    def classifier(self):
        """(classifier, provenance) that the layer cases explain: classifier.h5 in the work folder,
        trained for one epoch first where it is not there yet."""
        if not self.path("classifier.h5").exists():
            classifier_case(self).tool(1, [])
        return load_classifier(self.path("classifier.h5"))


def script_dataset(name="fashion_mnist", limit=None):
    """The dataset a benchmark script trains on: `name`, read from $CLADEC_DATA_DIR where that is set
    (as the CLI's --data-dir)."""
    return load_dataset(name, data_dir=os.environ.get("CLADEC_DATA_DIR"), limit=limit)


def classifier_case(bench):
    """train-classifier against `fit` of the same classifier on (images, labels)."""
    shape, n_classes = bench.dataset.image_shape, bench.dataset.n_classes

    def tool(epochs, callbacks):
        train_classifier(bench.dataset, bench.tool_settings(epochs, callbacks), bench.path("classifier.h5"))

    def peer(epochs, callbacks):
        bench.fresh()
        model = build_classifier(shape, n_classes)
        bench.plain_fit(model, bench.y, classification_loss(model), epochs, callbacks)

    return Case("train-classifier", tool, peer, training_flops(build_classifier(shape, n_classes)))


def plain_decoder_model(classifier, provenance, layer, alpha):
    """image -> frozen encoder -> decoder (and, for alpha > 0, the frozen classifier on the reconstruction)."""
    model = stacked(frozen_encoder(classifier, layer), decoder_for(classifier, layer, provenance), "plain_cladec")
    if alpha == 0.0:
        return model
    classifier.trainable = False
    logits = classifier(model.outputs[0], training=False)
    return keras.Model(model.inputs, [model.outputs[0], logits], name="plain_cladec_extended")


def decoder_case(bench, classifier, provenance, layer_spec, alpha):
    """train-decoder for one layer and alpha against `fit` of the stacked encoder and decoder."""
    layer = resolve_layer(classifier, layer_spec)

    def tool(epochs, callbacks):
        train_decoder(classifier, provenance, bench.dataset, layer.name, alpha, bench.tool_settings(epochs, callbacks),
                      bench.path("decoder.h5"))

    def peer(epochs, callbacks):
        bench.fresh()
        model = plain_decoder_model(classifier, provenance, layer, alpha)
        if alpha == 0.0:
            bench.plain_fit(model, bench.x, sum_squared_error, epochs, callbacks)
        else:
            bench.plain_fit(model, [bench.x, bench.y], [sum_squared_error, classification_loss(classifier)],
                            epochs, callbacks, loss_weights=[1.0 - alpha, alpha])

    work = training_flops(plain_decoder_model(classifier, provenance, layer, alpha))
    return Case(f"train-decoder --layer {layer_spec} --alpha {alpha:g}", tool, peer, work)


def refae_case(bench, classifier, provenance, layer_spec):
    """train-refae for one layer against `fit` of the same autoencoder on (images, images)."""
    layer = resolve_layer(classifier, layer_spec)

    def tool(epochs, callbacks):
        train_refae(classifier, provenance, bench.dataset, layer.name, bench.tool_settings(epochs, callbacks),
                    bench.path("refae.h5"))

    def peer(epochs, callbacks):
        bench.fresh()
        bench.plain_fit(build_refae(classifier, layer, provenance), bench.x, sum_squared_error, epochs, callbacks)

    return Case(f"train-refae --layer {layer_spec}", tool, peer,
                training_flops(build_refae(classifier, layer, provenance)))


FUSED_LAYERS = (-1, -2, -3, -4)


def fused_case(bench, classifier, provenance):
    """train-decoder --layer -1,-2,-3,-4 (one pass; under float16 one after another, as its peer) against the
    four one-layer cladec runs in a row."""
    layers = [resolve_layer(classifier, spec) for spec in FUSED_LAYERS]

    def tool(epochs, callbacks):
        train_decoders(classifier, provenance, bench.dataset, [layer.name for layer in layers], 0.0,
                       bench.tool_settings(epochs, callbacks), [bench.path(f"fused{i}.h5") for i in range(len(layers))])

    def peer(epochs, callbacks):
        # The same timer sees the four fits; an epoch's time is then the sum over the four.
        for layer in layers:
            train_decoder(classifier, provenance, bench.dataset, layer.name, 0.0,
                          bench.tool_settings(epochs, callbacks), bench.path("separate.h5"))

    work = sum(training_flops(plain_decoder_model(classifier, provenance, layer, 0.0)) for layer in layers)
    return Case("train-decoder --layer -1,-2,-3,-4", tool, peer, work, peer_name="4 one-layer cladec runs")


def layer_cases(bench, classifier, provenance):
    """The rows that need a trained classifier, in the order they run (the ones a GPU check needs first)."""
    return [
        fused_case(bench, classifier, provenance),
        decoder_case(bench, classifier, provenance, -1, 0.0),
        refae_case(bench, classifier, provenance, -1),
        decoder_case(bench, classifier, provenance, -1, 0.99),
        decoder_case(bench, classifier, provenance, -2, 0.0),
    ]


def steady_seconds(epoch_seconds_per_run):
    """Fastest epoch after the first of each run, and the median of those epochs."""
    steady = [t for run in epoch_seconds_per_run for t in run[1:]]
    return min(steady), statistics.median(steady)


def fastest_steady_epoch(run, epochs):
    """Wall-clock seconds of the fastest epoch after the first of `run(epochs, callbacks)`."""
    timer = EpochTimer()
    run(epochs, [timer])
    return steady_seconds([timer.epoch_seconds()])[0]


def turn_order(repeat):
    """The sides of the `repeat`-th turn in the order they run: cladec first in even turns, the peer first
    in odd ones, so that neither side always runs right after the other case's runs or always second."""
    return ("cladec", "peer") if repeat % 2 == 0 else ("peer", "cladec")


def turn_speedups(runs):
    """Per turn, the peer's fastest epoch after the first over cladec's, from runs that ran side by side:
    a drift in the machine's speed between turns cancels out of each."""
    return [steady_seconds([peer])[0] / steady_seconds([mine])[0]
            for mine, peer in zip(runs["cladec"], runs["peer"])]


def time_case(case, epochs, repeats, n_images, peaks):
    """Run a case's cladec and peer sides in turn, `repeats` times each (see `turn_order`); a result row.

    `speedup` is the peer's fastest epoch over cladec's, over all turns: above 1, cladec is faster.
    `cpu_speedup` is the same for CPU seconds, `median_speedup` for the median epochs, which count the
    epochs that something held up (the fastest leave them out). `turn_speedups` compares the sides
    within each turn, and `median_turn_speedup` is their median: a machine whose speed shifts for
    minutes at a time can give one side's fastest epoch a quiet stretch that the other never had.
    """
    runs = {"cladec": [], "peer": []}
    cpu_runs = {"cladec": [], "peer": []}
    for repeat in range(repeats):
        for side in turn_order(repeat):
            timer = EpochTimer()
            (case.tool if side == "cladec" else case.peer)(epochs, [timer])
            runs[side].append(timer.epoch_seconds())
            cpu_runs[side].append(timer.epoch_seconds(clock=1))
    row = {"command": case.name, "peer_name": case.peer_name, "train_flops_per_image": int(case.flops_per_image),
           "epoch_seconds": runs, "epoch_cpu_seconds": cpu_runs}
    for side, times in runs.items():
        fastest, median = steady_seconds(times)
        images_per_s = n_images / fastest
        gflops = case.flops_per_image * images_per_s / 1e9
        row[side] = {"s_per_epoch": fastest, "median_s_per_epoch": median,
                     "cpu_s_per_epoch": steady_seconds(cpu_runs[side])[0], "images_per_s": images_per_s,
                     "gflop_per_s": gflops, "fraction_of_peak": {dtype: gflops / peak for dtype, peak in peaks.items()}}
    row["speedup"] = row["peer"]["s_per_epoch"] / row["cladec"]["s_per_epoch"]
    row["cpu_speedup"] = row["peer"]["cpu_s_per_epoch"] / row["cladec"]["cpu_s_per_epoch"]
    row["median_speedup"] = row["peer"]["median_s_per_epoch"] / row["cladec"]["median_s_per_epoch"]
    row["turn_speedups"] = turn_speedups(runs)
    row["median_turn_speedup"] = statistics.median(row["turn_speedups"])
    row["turn_cpu_speedups"] = turn_speedups(cpu_runs)
    row["median_turn_cpu_speedup"] = statistics.median(row["turn_cpu_speedups"])
    return row


def matmul_gflops(dtype, n, min_seconds=0.5):
    """GFLOP/s of an n x n by n x n matrix product through keras.ops in `dtype` (best of three timings)."""
    a = ops.cast(keras.random.uniform((n, n), seed=1), dtype)
    b = ops.cast(keras.random.uniform((n, n), seed=2), dtype)

    def timed(count):
        start = time.perf_counter()
        checksum = 0.0
        for _ in range(count):
            # Reading one element waits for the whole product, on every backend and device.
            checksum = checksum + ops.cast(ops.matmul(a, b)[0, 0], "float32")
        ops.convert_to_numpy(checksum)
        return time.perf_counter() - start

    timed(1)
    count = 1
    while (elapsed := timed(count)) < min_seconds / 3:
        count *= 2
    best = min([elapsed] + [timed(count) for _ in range(2)])
    return 2.0 * n ** 3 * count / best / 1e9


def measure_peaks(precision, is_gpu):
    """The device's matrix-product GFLOP/s in float32 and in the compute precision used."""
    n = 8192 if is_gpu else 2048
    peaks = {"float32": matmul_gflops("float32", n)}
    if precision != "float32":
        peaks[precision] = matmul_gflops(precision, n)
    return peaks


def cpu_name():
    """The processor's model name (from /proc/cpuinfo on Linux) and whether it has AVX-512 and AMX."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"name": platform.processor() or platform.machine()}
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    return {"name": fields.get("model name", platform.machine()), "avx512": "avx512f" in flags,
            "amx": "amx_tile" in flags}


def run_benchmark(dataset, settings, epochs=3, repeats=1, log=None):
    """Time every case on `dataset` under `settings`' device set-up; the result as a dict."""
    if epochs < 2:
        raise UsageError(f"the benchmark needs at least 2 epochs (the first is left out), got {epochs}")
    if repeats < 1:
        raise UsageError(f"repeats must be at least 1, got {repeats}")
    setup = settings.runtime()
    start(settings)
    device = runtime.current_device()
    load_start = os.getloadavg()
    peaks = measure_peaks(setup.precision, device.is_gpu)
    rows = []
    with tempfile.TemporaryDirectory(prefix="cladec-benchmark-") as work_dir:
        bench = Bench(dataset, settings, work_dir)

        def timed(case):
            row = time_case(case, epochs, repeats, len(bench.y), peaks)
            rows.append(row)
            if log:
                log(f"{row['command']}: cladec {row['cladec']['s_per_epoch']:.2f} s/epoch, {row['peer_name']} "
                    f"{row['peer']['s_per_epoch']:.2f} s/epoch ({row['speedup']:.2f}x)")

        timed(classifier_case(bench))
        classifier, provenance = load_classifier(bench.path("classifier.h5"))
        for case in layer_cases(bench, classifier, provenance):
            timed(case)
    return {
        **setup.provenance(),
        "cpu": cpu_name(),
        "cpu_cores": runtime.cpu_cores(),
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
        "keras": keras.__version__,
        "dataset": dataset.name,
        "train_images": len(bench.y),
        "batch_size": settings.batch_size,
        "lr": settings.lr,
        "lr_schedule": settings.lr_schedule,
        "epochs": epochs,
        "repeats": repeats,
        "peak_gflop_per_s": peaks,
        "rows": rows,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
