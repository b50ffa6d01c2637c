"""Several models of one architecture trained in one compiled step under JAX (`jax.vmap` over their
stacked weights, each model on its own batches) against one model a step: the measurement behind
training a reproduction's runs, or a run's Acc Eval classifiers, side by side on one GPU.

    KERAS_BACKEND=jax python benchmarks/vmapped_models.py OUT.json [--models 1,2,4,8] [--steps 64]
        [--chunks 6] [--precision auto|float32|bfloat16] [--check] [--no-wide]

Models: the paper's classifier (32x32x1 images, 10 classes, cross-entropy on logits) and the layer -1
decoder (10-value codes to 32x32x1 images, summed squared error), each with Adam at batch 128. A chunk
of `--steps` optimizer steps runs in one `lax.scan`, as cladec's chunked steps do. The first chunk
(compilation) is left out and the median of the others gives milliseconds per step. One model is
trained without vmap, as cladec trains today. Unless `--no-wide`, one model also trains at 2, 4, ...
times the batch (rows with `batch_size` above 128): as much work a step with plain weights, a rough
ceiling for stacking that many models (one Adam update where stacking makes K). Inputs are uniform random images and normal codes, two
sets taken in turn: these layers take the same time whatever the values.
`--check` first trains, in float32, a few steps of three models at once and the same three one at a
time, from the same weights on the same batches, and prints the largest relative difference of their
losses and outputs.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import keras
import numpy as np

from cladec_cli.architectures import build_classifier
from cladec_cli.decoder import build_decoder
from cladec_cli.losses import sum_squared_error

BATCH, IMAGE, CLASSES = 128, (32, 32, 1), 10


def classifier_case():
    """(model builder, loss, random batch maker) of the paper's classifier."""
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def batches(rng, shape):
        return (rng.uniform(size=shape + IMAGE).astype("float32"),
                rng.integers(0, CLASSES, size=shape).astype("int32"))

    return (lambda: build_classifier(IMAGE, CLASSES)), cross_entropy, batches


def decoder_case():
    """(model builder, loss, random batch maker) of the layer -1 decoder."""
    def loss(images, reconstructions):
        return keras.ops.mean(sum_squared_error(images, reconstructions))

    def batches(rng, shape):
        return (rng.normal(size=shape + (CLASSES,)).astype("float32"),
                rng.uniform(size=shape + IMAGE).astype("float32"))

    return (lambda: build_decoder((CLASSES,), IMAGE)), loss, batches


CASES = {"classifier": classifier_case, "decoder": decoder_case}


def train_step(model, loss_fn, optimizer):
    """One optimizer step of `model` as a pure function of its state (trainable, non-trainable and
    optimizer variables) and a batch; returns the new state and the loss."""
    import jax

    def step(state, batch):
        trainable, non_trainable, optimizer_vars = state
        x, y = batch

        def loss_of(trainable):
            out, new_non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
            return loss_fn(y, out), new_non_trainable

        (loss, non_trainable), grads = jax.value_and_grad(loss_of, has_aux=True)(trainable)
        trainable, optimizer_vars = optimizer.stateless_apply(optimizer_vars, grads, trainable)
        return (trainable, non_trainable, optimizer_vars), loss

    return step


def prepared(name, count):
    """For `count` models of case `name`, initialised with seeds 0..: a template model, their training
    step as a pure function, their states and the case's random batch maker."""
    build, loss_fn, batches = CASES[name]()
    states = []
    for seed in range(count):
        keras.utils.set_random_seed(seed)
        model = build()
        optimizer = keras.optimizers.Adam(2e-3)
        optimizer.build(model.trainable_variables)
        states.append(tuple([v.value for v in variables] for variables in
                            (model.trainable_variables, model.non_trainable_variables, optimizer.variables)))
    return model, train_step(model, loss_fn, optimizer), states, batches


def stacked(states):
    import jax

    return jax.tree.map(lambda *leaves: keras.ops.stack(leaves), *states)


def chunk_function(step, vmapped):
    """A compiled function running a chunk of steps (batches stacked along the first axis) with `lax.scan`."""
    import jax

    one = jax.vmap(step) if vmapped else step
    return jax.jit(lambda state, xs, ys: jax.lax.scan(one, state, (xs, ys)),
                   donate_argnums=0)


def time_case(name, count, steps, chunks, seed=0, wide=False):
    """Milliseconds per step and images per second of `count` models (vmapped when above 1), or, `wide`,
    of one model at `count` times the batch: as much work a step without vmap's batched weights."""
    import jax

    _, step, states, batches = prepared(name, 1 if wide else count)
    vmapped = count > 1 and not wide
    state = stacked(states) if vmapped else states[0]
    shape = (steps, count, BATCH) if vmapped else (steps, count * BATCH if wide else BATCH)
    rng = np.random.default_rng(seed)
    inputs = [tuple(jax.device_put(a) for a in batches(rng, shape)) for _ in range(2)]
    run = chunk_function(step, vmapped)
    seconds = []
    for i in range(chunks):
        start = time.perf_counter()
        state, losses = run(state, *inputs[i % 2])
        losses.block_until_ready()
        seconds.append(time.perf_counter() - start)
    if not np.all(np.isfinite(np.asarray(losses))):
        raise SystemExit(f"{name}: a loss is not finite")
    per_chunk = statistics.median(seconds[1:])
    return {"model": name, "models": 1 if wide else count, "batch_size": count * BATCH if wide else BATCH,
            "vmapped": vmapped, "ms_per_step": 1000 * per_chunk / steps,
            "images_per_s": count * BATCH * steps / per_chunk, "first_chunk_s": seconds[0]}


def check(name, count=3, steps=3):
    """How far `count` models trained together (vmap) are from the same models trained one at a time,
    from the same weights on the same batches, in float32: the largest relative difference of their
    training losses and of their outputs on a new batch, ||a - b|| / ||a||. Outputs are taken in
    training mode: a conv bias in front of BatchNorm has a gradient of zero up to rounding, which Adam
    scales up, and only the batch statistics cancel it exactly."""
    import jax

    model, step, states, batches = prepared(name, count)
    rng = np.random.default_rng(1)
    xs, ys = batches(rng, (steps, count, BATCH))
    probe, _ = batches(rng, (BATCH,))
    together, together_losses = chunk_function(step, True)(stacked(states), xs, ys)

    def outputs(state):
        return np.asarray(model.stateless_call(state[0], state[1], probe, training=True)[0], "float64")

    def relative(a, b):
        a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
        return float(np.linalg.norm(a - b) / np.linalg.norm(a))

    one_at_a_time = chunk_function(step, False)
    worst = 0.0
    for k in range(count):
        alone, alone_losses = one_at_a_time(states[k], xs[:, k], ys[:, k])
        mine = jax.tree.map(lambda leaf: leaf[k], together)
        worst = max(worst, relative(alone_losses, together_losses[:, k]), relative(outputs(alone), outputs(mine)))
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--models", default="1,2,4,8")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--chunks", type=int, default=6)
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--no-wide", dest="wide", action="store_false",
                        help="leave out the rows of one model at 2, 4, ... times the batch")
    args = parser.parse_args()
    if keras.backend.backend() != "jax":
        parser.error("needs Keras' JAX backend (KERAS_BACKEND=jax)")
    if args.chunks < 3:
        parser.error("--chunks must be at least 3: the first is left out and a median needs two")
    import jax

    device = jax.devices()[0]
    checks = {}
    if args.check:
        for name in CASES:
            checks[name] = check(name)
            print(json.dumps({"check": name, "max_relative_difference": checks[name]}), flush=True)
    precision = args.precision if args.precision != "auto" else \
        ("bfloat16" if device.platform == "gpu" else "float32")
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
    rows = []
    result = {"device": f"{device.platform.upper()} {device.device_kind}", "jax": jax.__version__,
              "keras": keras.__version__, "precision": precision, "batch_size": BATCH, "steps_per_chunk": args.steps,
              "chunks": args.chunks, "checks": checks, "rows": rows}
    for name in CASES:
        base = None
        counts = [int(k) for k in args.models.split(",")]
        for count, wide in [(k, False) for k in counts] + [(k, True) for k in counts if k > 1 and args.wide]:
            row = time_case(name, count, args.steps, args.chunks, wide=wide)
            if count == 1:
                base = row["images_per_s"]
            row["speedup_vs_one"] = row["images_per_s"] / base if base else None
            rows.append(row)
            print(json.dumps(row), flush=True)
            # Written after each row: a time limit that stops the script keeps what it measured.
            Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
