#!/bin/bash
# make demo's yardstick, taking turns in fresh processes: the wall time of what `make demo` runs after
# the install, then the plain Keras layer -1 decoder's seconds per epoch on all 60,000 images
# (benchmarks/plain_decoder_epoch.py, on the demo's classifier). The demo should take at most twice the
# fastest plain epoch.
#
#   benchmarks/demo_vs_plain_epoch.sh [ROUNDS]     (default 3; run from the repository root)
set -euo pipefail
rounds=${1:-3}
cladec=${CLADEC:-.venv/bin/cladec}
python=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for round in $(seq "$rounds"); do
  start=$(date +%s.%N)
  if ! "$cladec" demo --limit 4000 --epochs 3 --class Bag --out-dir "$work/demo" --overwrite > "$work/demo.log" 2>&1; then
    cat "$work/demo.log" >&2
    exit 1
  fi
  end=$(date +%s.%N)
  echo "round $round demo wall $(echo "$end - $start" | bc) s; load $(cut -d' ' -f1-3 /proc/loadavg)"
  grep "^demo:" "$work/demo.log" | grep -v "explanation grid in" || true
  "$python" benchmarks/plain_decoder_epoch.py "$work/demo/classifier.h5" --epochs 3 2>&1 | grep -v oneDNN | tail -3
done
