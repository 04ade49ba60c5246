#!/usr/bin/env bash
# Profile one GPU inference target with 20 runs and print the interference bench JSON.
#
# Usage: scripts/gpu-check.sh [APP]        (default APP: resnet50, served on cuda)
# Env:   PYTHON (interpreter; default .venv/bin/python, else python3), BUDGET (20),
#        HOLDOUT (5), SECONDS_PER_RUN (4), RATE (50), EDGEWISE_HOME (default: a temp dir).
# Without CUDA it prints one line saying why and exits 0 (the GPU paths are skipped).
# Without stress-ng the GPU stressor is the only interference source (--gpu-only).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
APP=${1:-resnet50}

reason=$("$PY" -c 'from edgewise.interference.gpu import gpu_available as g
a = g()
print("" if a.cuda else a.reason)')
if [ -n "$reason" ]; then
  echo "gpu-check: skipped: $reason"
  exit 0
fi

export EDGEWISE_HOME=${EDGEWISE_HOME:-$(mktemp -d -t edgewise-gpu-XXXX)}
extra=()
if ! command -v stress-ng >/dev/null 2>&1; then
  echo "gpu-check: stress-ng not found: stressing the GPU only" >&2
  extra+=(--gpu-only)
fi
start=$(date +%s)
"$PY" -m edgewise.bench.interference interference \
  --apps "$APP" --device cuda --budget "${BUDGET:-20}" --holdout "${HOLDOUT:-5}" \
  --seconds "${SECONDS_PER_RUN:-4}" --warmup 1 --rate "${RATE:-50}" --repeats 3 \
  --solo-every 10 --no-lhs --foreign-threshold 1.0 "${extra[@]}" --json
echo "gpu-check: wall $(( $(date +%s) - start )) s" >&2
