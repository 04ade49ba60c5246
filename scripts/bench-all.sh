#!/usr/bin/env bash
# Runs the benchmarks behind docs/benchmarks.md and the README's results table, one after
# another, each into RESULTS/NAME.json (default RESULTS: benchmarks/results):
#
#   {"benchmark": NAME, "command": "edgewise bench ...", "host": {...}, "result": {...}}
#
# "result" is what `edgewise ... --json` printed (for gpu-check, what scripts/gpu-check.sh
# printed; without CUDA it is skipped and writes nothing); "host" is the machine's
# fingerprint over the run: CPU model, cores, memory, GPU, CPU steal and load average
# from /proc/stat and /proc/loadavg before, during and after, the dates, the commit.
# A benchmark with a setup step (SETUP below, e.g. fleet's synthetic knowledge base) runs
# it first with the project's Python; "$RUN" in a command or setup stands for the run's
# temporary directory, and the JSON keeps the step under "setup" as written here.
# A benchmark that fails leaves its previous JSON in place; the script names its log.
# All of them take several hours on 2 cores; run it on a quiet machine, e.g.
#   flock /tmp/edgewise-slow.lock scripts/bench-all.sh --only telemetry,plan
# then `scripts/render-benchmarks.py` regenerates docs/benchmarks.md and the README table.
#
# Usage: scripts/bench-all.sh [--only NAME[,NAME...]] [--out DIR] [--list]
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
EW=${EDGEWISE:-.venv/bin/edgewise}
OUT=benchmarks/results
declare -A CMD=(
  [telemetry]="bench telemetry --seconds 30 --json"
  [forecast]="bench forecast --trace bikeshare --time-col ts --value-col count --season 24,168 --horizon 24 --origins 14 --train 1344 --json"
  [plan]="bench plan --flavors 20 --max-replicas 100 --instances 200 --seed 0 --json"
  [serving]="bench serving --trace bikeshare --days 14 --startup-s 60 --slo-ms 100 --policies edgewise,hpa,kpa,rayserve,static,oracle --seed 0 --json"
  [scale]="bench scale --seed 0 --json"
  [retrain]="bench retrain --devices examples/devices-hetero.yaml --seed 0 --json"
  [retrain-kill]="bench retrain --devices examples/devices-hetero.yaml --seed 0 --kill-at-step 20 --kill-device auto --json"
  [serving-overhead]="bench serving-overhead --model mobilenet_v2 --ingress haproxy --json"
  [serving-live]="bench serving-live --trace bikeshare --hours 12 --speedup 240 --policies edgewise,hpa --model digits_cnn --slo-ms 50 --json"
  [interference]="bench interference --apps mobilenet_v2,vit_tiny,resnet18 --budget 30 --holdout 10 --holdout-repeats 2 --load 0.2 --min-requests 60 --seconds 8 --warmup 1 --repeats 3 --solo-every 10 --seed 0 --json"
  [gpu-check]="scripts/gpu-check.sh"
  [forecast-traces]="bench forecast --all-traces --origins 14 --seed 0 --json"
  [serving-traces]="bench serving --traces bikeshare,electricity,pedestrians --days 14 --startup-s 60 --slo-ms 100 --policies edgewise,oracle --seed 0 --json"
  [fleet]="bench fleet --kb sqlite:///\$RUN/fleet-kb.sqlite --trace bikeshare --days 14 --seed 0 --json"
  [fleet-live]="bench fleet-live --kb sqlite:///\$RUN/fleet-kb.sqlite --hours 24 --speedup 480 --window-s 7200 --seed 0 --json"
  [rollout]="bench rollout --slo-ms 150 --load 0.7 --replicas 2 --canary-share 0.1 --seed 0 --json"
  [capacity]="capacity mobilenet_v2 --flavors examples/flavors.yaml --slo-ms 150 --validate --samples 1000 --time-budget-s 240 --validate-requests 2000 --validate-max-s 1500 --max-reprofiles 1 --seed 0 --json"
)
# SETUP: run with $PY before the benchmark; fleet's knowledge base holds the interference
# models of the fleet's six zoo models, profiled on this host (about 15 min); fleet-live
# needs two of them (run after fleet it finds them there, alone it profiles them: 4 min)
declare -A SETUP=(
  [fleet]="scripts/profile-fleet-kb.py \$RUN/fleet-kb.sqlite"
  [fleet-live]="scripts/profile-fleet-kb.py \$RUN/fleet-kb.sqlite --fleet examples/fleet-live.yaml"
)
ORDER=(telemetry forecast forecast-traces plan serving serving-traces fleet scale retrain retrain-kill serving-overhead serving-live fleet-live rollout interference capacity gpu-check)

usage() { sed -n '2,19s/^# \{0,1\}//p' "$0"; }
names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --only) [ $# -ge 2 ] || { echo "error: --only needs NAME[,NAME]" >&2; exit 2; }
            IFS=, read -ra picked <<<"$2"; names+=("${picked[@]}"); shift 2 ;;
    --only=*) IFS=, read -ra picked <<<"${1#--only=}"; names+=("${picked[@]}"); shift ;;
    --out) [ $# -ge 2 ] || { echo "error: --out needs a directory" >&2; exit 2; }
           OUT=$2; shift 2 ;;
    --list) printf '%s\n' "${ORDER[@]}"; exit 0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#names[@]} -eq 0 ] && names=("${ORDER[@]}")
for name in "${names[@]}"; do
  [ -n "${CMD[$name]:-}" ] || { echo "error: unknown benchmark $name (one of: ${ORDER[*]})" >&2; exit 2; }
done
[ -x "$EW" ] || { echo "error: $EW not found: create the virtualenv first (make install)" >&2; exit 2; }
mkdir -p "$OUT"
LOGS=$(mktemp -d -t edgewise-bench-XXXX)
export EDGEWISE_HOME="${EDGEWISE_HOME:-$LOGS/home}"

# wrap NAME COMMAND STDOUT STAT0 STAT1 LOADS T0 T1 DEST: the bench's JSON with the host's
# fingerprint, written atomically to DEST
wrap() {
  "$PY" - "$@" <<'PYEOF'
import json, os, platform, shutil, subprocess, sys
from datetime import datetime, timezone
from edgewise.telemetry.procfs import parse_loadavg, parse_meminfo, parse_stat

name, command, stdout, stat0, stat1, loads, t0, t1, dest = sys.argv[1:]
a, b = (parse_stat(open(p).read()).cpu for p in (stat0, stat1))
ticks = max(1, b.total - a.total)
samples = [parse_loadavg(line) for line in open(loads) if line.strip()]
model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
              if ln.startswith("model name")), platform.processor() or platform.machine())
gpus = None
if shutil.which("nvidia-smi"):
    run = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    gpus = [ln.strip() for ln in run.stdout.splitlines() if ln.strip()] or None
git, dirty = os.environ["BENCH_COMMIT"], os.environ["BENCH_DIRTY"] == "1"  # at the start
iso = lambda t: datetime.fromtimestamp(int(t), timezone.utc).isoformat(timespec="seconds")
host = {
    "cpu_model": model,
    "cores": os.cpu_count(),
    "cores_usable": len(os.sched_getaffinity(0)),
    "memory_gb": round(parse_meminfo(open("/proc/meminfo").read())["MemTotal"] / 2**30, 1),
    "gpus": gpus,
    "kernel": platform.release(),
    "cpu_steal_frac": round((b.steal - a.steal) / ticks, 4),
    "cpu_busy_frac": round(1 - (b.idle + b.iowait - a.idle - a.iowait) / ticks, 4),
    "steal_ticks": {"before": a.steal, "after": b.steal},
    "loadavg_1m": {
        "start": samples[0].load1 if samples else None,
        "mean": round(sum(s.load1 for s in samples) / len(samples), 2) if samples else None,
        "max": max(s.load1 for s in samples) if samples else None,
        "end": samples[-1].load1 if samples else None,
    },
    "started": iso(t0),
    "finished": iso(t1),
    "wall_s": int(t1) - int(t0),
    "commit": git or None,
    "dirty": dirty,
}
result = json.loads(open(stdout).read())
shown = command if command.startswith("scripts/") else f"edgewise {command}"
doc = {"benchmark": name, "command": shown, "host": host, "result": result}
if os.environ.get("BENCH_SETUP"):  # as written in the script, "$RUN" its temp directory
    doc = {"benchmark": name, "setup": os.environ["BENCH_SETUP"], **doc}
with open(dest + ".tmp", "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
os.replace(dest + ".tmp", dest)
PYEOF
}

failed=0
for name in "${names[@]}"; do
  cmd=${CMD[$name]//\$RUN/$LOGS}
  setup=${SETUP[$name]:-}
  log="$LOGS/$name.log"
  shown="edgewise $cmd"; [[ $cmd == scripts/* ]] && shown=$cmd
  echo "== $name: $shown" >&2
  if [ -n "$setup" ]; then
    echo "   setup: $PY ${setup//\$RUN/$LOGS}" >&2
    # shellcheck disable=SC2086  # the step is a list of words
    if ! "$PY" ${setup//\$RUN/$LOGS} >"$log" 2>&1; then
      echo "   FAILED setup; see $log" >&2
      failed=1
      continue
    fi
  fi
  export BENCH_SETUP=${setup:+python $setup}
  cat /proc/stat >"$LOGS/$name.stat0"
  : >"$LOGS/$name.loads"
  ( while :; do cat /proc/loadavg >>"$LOGS/$name.loads"; sleep 5; done ) &
  sampler=$!
  BENCH_COMMIT=$(git rev-parse HEAD 2>/dev/null) BENCH_DIRTY=0
  [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && BENCH_DIRTY=1
  export BENCH_COMMIT BENCH_DIRTY
  t0=$(date +%s)
  run=("$EW"); [[ $cmd == scripts/* ]] && run=()
  # shellcheck disable=SC2086  # the command is a list of words
  "${run[@]}" $cmd >"$LOGS/$name.json" 2>>"$log"
  rc=$?
  t1=$(date +%s)
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
  cat /proc/stat >"$LOGS/$name.stat1"
  cat /proc/loadavg >>"$LOGS/$name.loads"
  if [ $rc -eq 0 ] && grep -q '^gpu-check: skipped' "$LOGS/$name.json"; then
    echo "   $(cat "$LOGS/$name.json")" >&2
  elif [ $rc -eq 0 ] && wrap "$name" "${CMD[$name]}" "$LOGS/$name.json" "$LOGS/$name.stat0" \
       "$LOGS/$name.stat1" "$LOGS/$name.loads" "$t0" "$t1" "$OUT/$name.json" 2>>"$log"; then
    echo "   done in $(( t1 - t0 )) s: $OUT/$name.json" >&2
  else
    echo "   FAILED (exit $rc) after $(( t1 - t0 )) s; see $log" >&2
    failed=1
  fi
done
exit $failed
