#!/usr/bin/env bash
# The GPU check: GPU tests, the speed benchmark and a one-run Table II, everything written under OUTDIR.
#
#   benchmarks/gpu_check.sh OUTDIR
#
# On a GPU server it uses the installed TensorFlow. On a bare CUDA machine with JAX but no TensorFlow and
# no network, it installs keras, namex, optree, filelock and cladec from the bundle `make gpu-wheels` writes
# (gpu-bundle/, with the Fashion-MNIST files) and runs under Keras' JAX backend.
# Knobs: PYTHON (python3), GPU_BUNDLE (gpu-bundle), TABLE2_EPOCHS (64), BUDGET_S (450: the whole check's
# seconds; the Table II run gets what the earlier stages leave, less TABLE2_RESERVE_S, 10 s, for the
# stages after it), BENCH_LIMIT (20000: training images of the benchmark and the steps sweep), STAGES
# ("tests sweep benchmark table2": which stages run, in that order; also `concurrency`, `vmap`, `profile`,
# `outlayer`, `xlaflags` and `protocol`), SWEEP_STEPS (16,64: steps per execution the sweep times), PROFILE_LIMIT (16384:
# training images of the `profile` stage), VMAP_MODELS (1,2,4,8: models side by side in the `vmap` stage), XLA_FLAGS_ROUNDS (2: rounds of the
# `xlaflags` stage), CONCURRENCY_PROCS (1,4: processes sharing the GPU, each round),
# TESTS_LIMIT_S (150), MIN_STAGE_S (20: a stage starts only with that much budget left), TABLE2_FLAGS
# (extra reproduce options), PROTOCOL_EPOCHS (3) and PROTOCOL_RUNS (2: the `protocol` stage's
# reproduction, benchmarks/protocol_projection.py). The `protocol` and `table2` stages each take what the
# budget has left, less TABLE2_RESERVE_S: name one of them in a call.
set -uo pipefail
OUT=${1:?usage: benchmarks/gpu_check.sh OUTDIR}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
BUNDLE=${GPU_BUNDLE:-gpu-bundle}
BUDGET_S=${BUDGET_S:-450}
START=$(date +%s)
export PYTHONUNBUFFERED=1

log() { echo "[gpu_check +$(( $(date +%s) - START ))s] $*" | tee -a "$OUT/check.log"; }
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
# A time limit of $1 seconds, cut to what the budget has left, and at least 1 (`timeout 0` would mean none).
within() { local s=$1 l; l=$(left); (( s > l )) && s=$l; (( s < 1 )) && s=1; echo "$s"; }
# A stage's share of what is left: half, or all of it for the last stage named (LAST, set by the loop).
share() { if (( LAST )); then left; else echo $(( $(left) / 2 )); fi; }

if ! "$PY" -c "import tensorflow" >/dev/null 2>&1; then
  export KERAS_BACKEND=${KERAS_BACKEND:-jax}
fi
# PYTHONSAFEPATH (Python 3.11+) keeps the source tree's cladec_cli, importable from the repository root,
# from passing for an installed one.
if ! PYTHONSAFEPATH=1 "$PY" -c "import keras, click, h5py, PIL, cladec_cli" >/dev/null 2>&1; then
  log "installing from $BUNDLE/wheels (no index)"
  "$PY" -m pip install --quiet --no-index --find-links "$BUNDLE/wheels" keras namex optree filelock cladec \
    >"$OUT/install.log" 2>&1 || { log "install failed: see install.log"; tail -5 "$OUT/install.log"; }
fi
if [ -d "$BUNDLE/fashion-mnist" ]; then
  export CLADEC_DATA_DIR=${CLADEC_DATA_DIR:-$PWD/$BUNDLE/fashion-mnist}
fi
BACKEND=$("$PY" -c "import keras; print(keras.backend.backend())" 2>/dev/null || echo unknown)
log "backend $BACKEND"
{
  nvidia-smi -L
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
  "$PY" -c "import sys, keras, numpy; print('python', sys.version.split()[0], 'keras', keras.__version__, 'numpy', numpy.__version__)"
  [ "$BACKEND" = jax ] && "$PY" -c "import jax; print('jax', jax.__version__, jax.devices())"
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

STAGES=${STAGES:-tests sweep benchmark table2}

stage_tests() {
  log "GPU tests"
  timeout "$(within "${TESTS_LIMIT_S:-150}")" "$PY" -m pytest -q -p no:cacheprovider -m gpu tests >"$OUT/gpu-tests.log" 2>&1
  log "GPU tests: exit $?, $(tail -n 1 "$OUT/gpu-tests.log")"
}

stage_sweep() {
  log "steps per execution sweep: rolled ${SWEEP_STEPS:-16,64}, unrolled 16"
  timeout "$(within $(( $(left) / 3 )))" "$PY" benchmarks/steps_sweep.py "$OUT/steps-sweep.json" --limit "${BENCH_LIMIT:-20000}" \
    --steps "${SWEEP_STEPS:-16,64}" >"$OUT/steps-sweep.log" 2>&1
  log "sweep: exit $?"
  timeout "$(within $(( $(left) / 3 )))" "$PY" benchmarks/steps_sweep.py "$OUT/steps-sweep-unrolled.json" --unroll \
    --limit "${BENCH_LIMIT:-20000}" --steps 16 >>"$OUT/steps-sweep.log" 2>&1
  log "sweep unrolled: exit $?"
  grep '^{' "$OUT/steps-sweep.log"
}

stage_benchmark() {
  log "benchmark --quick"
  timeout "$(within $(share))" "$PY" -m cladec_cli benchmark --quick --limit "${BENCH_LIMIT:-20000}" --epochs 3 --out "$OUT/speed-gpu-$BACKEND.json" \
    >"$OUT/benchmark.log" 2>&1
  log "benchmark: exit $?"
  tail -n 25 "$OUT/benchmark.log"
}

stage_concurrency() {
  log "processes sharing the GPU: ${CONCURRENCY_PROCS:-1,4}, fused 4-layer decoders, all training images"
  timeout "$(within $(share))" "$PY" benchmarks/concurrent_trainings.py "$OUT/concurrency.json" \
    --procs "${CONCURRENCY_PROCS:-1,4}" --epochs 8 >"$OUT/concurrency.log" 2>&1
  log "concurrency: exit $?"
  grep '^{' "$OUT/concurrency.log"
}

stage_vmap() {
  if [ "$BACKEND" != jax ]; then log "vmap: needs the JAX backend, skipped"; return; fi
  log "models side by side in one step (vmap): classifier and layer -1 decoder, ${VMAP_MODELS:-1,2,4,8} at once, and one at as many times the batch"
  timeout "$(within $(share))" "$PY" benchmarks/vmapped_models.py "$OUT/vmapped.json" --check --models "${VMAP_MODELS:-1,2,4,8}" \
    >"$OUT/vmapped.log" 2>&1
  log "vmap: exit $?"
  grep '^{' "$OUT/vmapped.log"
}

stage_profile() {
  if [ "$BACKEND" != jax ]; then log "profile: needs the JAX backend, skipped"; return; fi
  log "where a steady epoch's time goes: kernels a step and busy time, cladec against plain Keras"
  timeout "$(within $(share))" "$PY" benchmarks/step_profile.py "$OUT" --limit "${PROFILE_LIMIT:-16384}" \
    >"$OUT/profile.log" 2>&1
  log "profile: exit $? (step-profile.json)"
  grep '^{' "$OUT/profile.log"
}

stage_outlayer() {
  log "the decoder's last convolution in float32 against the compute dtype, through cladec's training: fused decoders, layer -1 decoder, RefAE"
  timeout "$(within $(share))" "$PY" benchmarks/output_layer_ab.py "$OUT/output-layer.json" \
    >"$OUT/output-layer.log" 2>&1
  log "outlayer: exit $?"
  grep '^{' "$OUT/output-layer.log" | tail -n 1
}

stage_xlaflags() {
  log "XLA flags, each in its own process: defaults, CUDA graphs off, command buffers for most commands"
  timeout "$(within $(share))" "$PY" benchmarks/xla_flags_ab.py "$OUT/xla-flags.json" --rounds "${XLA_FLAGS_ROUNDS:-2}" \
    >"$OUT/xla-flags.log" 2>&1
  log "xlaflags: exit $?"
  grep '^{' "$OUT/xla-flags.log" | tail -n 1
}

stage_protocol() {
  log "Table II protocol projected from a reproduction of ${PROTOCOL_RUNS:-2} runs, ${PROTOCOL_EPOCHS:-3} epochs ($(left) s left)"
  timeout "$(within $(( $(left) - ${TABLE2_RESERVE_S:-10} )))" "$PY" benchmarks/protocol_projection.py "$OUT/protocol" \
    --epochs "${PROTOCOL_EPOCHS:-3}" --runs "${PROTOCOL_RUNS:-2}" --flags "${TABLE2_FLAGS:-}" >"$OUT/protocol.log" 2>&1
  log "protocol: exit $? (124: stopped at the time budget; the reproduction's log is protocol/table2.log)"
  tail -n 3 "$OUT/protocol.log"
}

stage_table2() {
  EPOCHS=${TABLE2_EPOCHS:-64}
  log "Table II, one run, $EPOCHS epochs, fused decoders ($(left) s left)"
  timeout "$(within $(( $(left) - ${TABLE2_RESERVE_S:-10} )))" "$PY" -m cladec_cli reproduce table2 --runs 1 --epochs "$EPOCHS" \
    ${TABLE2_FLAGS:-} --out "$OUT/table2" >"$OUT/table2.log" 2>&1
  log "Table II: exit $? (124: stopped at the time budget; what finished is in table2/)"
  grep -E "^(device|run|  )|saved|wrote" "$OUT/table2.log" | tail -n 40
}

read -ra STAGE_LIST <<<"$(echo $STAGES)"
for i in "${!STAGE_LIST[@]}"; do
  name=${STAGE_LIST[i]}
  LAST=$(( i == ${#STAGE_LIST[@]} - 1 ))
  if ! declare -F "stage_$name" >/dev/null; then log "unknown stage $name"
  elif (( $(left) < ${MIN_STAGE_S:-20} )); then log "$name: skipped, $(left) s of the budget left"
  else "stage_$name"; fi
done
log "done"
