#!/usr/bin/env bash
# Runs the benchmarks behind the README's results, one after another, each into
# docs/results/NAME.json (stderr into NAME.log). Takes about an hour on 2 cores; run it on
# a quiet machine. Usage: scripts/bench-all.sh [NAME ...]   (default: all)
set -uo pipefail
cd "$(dirname "$0")/.."
EW=.venv/bin/edgewise
OUT=docs/results
mkdir -p "$OUT"
export EDGEWISE_HOME="${EDGEWISE_HOME:-$(mktemp -d)}"
declare -A CMD=(
  [telemetry]="bench telemetry --seconds 30 --json"
  [forecast]="bench forecast --trace bikeshare --time-col ts --value-col count --season 24,168 --horizon 24 --origins 14 --train 1344 --json"
  [plan]="bench plan --flavors 20 --max-replicas 100 --instances 200 --seed 0 --json"
  [serving]="bench serving --trace bikeshare --days 14 --startup-s 60 --slo-ms 100 --policies edgewise,hpa,kpa,rayserve,static,oracle --seed 0 --json"
  [scale]="bench scale --seed 0 --json"
  [retrain]="bench retrain --devices examples/devices-hetero.yaml --seed 0 --json"
  [retrain-kill]="bench retrain --devices examples/devices-hetero.yaml --seed 0 --kill-at-step 20 --kill-device auto --json"
  [serving-overhead]="bench serving-overhead --model mobilenet_v2 --json"
  [serving-live]="bench serving-live --trace bikeshare --hours 12 --speedup 240 --policies edgewise,hpa --model digits_cnn --slo-ms 50 --json"
  [interference]="bench interference --apps mobilenet_v2,vit_tiny,resnet18 --budget 30 --holdout 10 --load 0.2 --min-requests 60 --seconds 8 --warmup 1 --repeats 3 --solo-every 10 --seed 0 --json"
)
ORDER=(telemetry forecast plan serving scale retrain retrain-kill serving-overhead serving-live interference)
names=("$@")
[ ${#names[@]} -eq 0 ] && names=("${ORDER[@]}")
for name in "${names[@]}"; do
  cmd="${CMD[$name]:-}"
  [ -z "$cmd" ] && { echo "unknown benchmark $name" >&2; exit 2; }
  start=$(date +%s)
  echo "== $name: edgewise $cmd" >&2
  if $EW $cmd >"$OUT/$name.json.tmp" 2>"$OUT/$name.log"; then
    mv "$OUT/$name.json.tmp" "$OUT/$name.json"
    echo "   done in $(( $(date +%s) - start )) s" >&2
  else
    echo "   FAILED (exit $?) after $(( $(date +%s) - start )) s; see $OUT/$name.log" >&2
  fi
done
