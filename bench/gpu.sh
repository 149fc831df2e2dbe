#!/usr/bin/env bash
# Training throughput on a GPU against the CPU (issue 18): one prepared script, under 8 minutes.
#
# sasrec and the default model (ranker) `init` on ml-100k (../shared/data, skipped when absent)
# and on the first 3 days of the medium synthetic log (bench/synth.py, about 1M events), on CUDA in
# fp32 and bf16 and on the CPU in fp32; one epoch, nothing held out (--valid-fraction 0), so each
# run is the same training pass. Prints one line per run: events/s, training seconds, peak host
# memory and peak GPU memory; writes bench_out/gpu/gpu.jsonl. The ranker has no gradient steps:
# its device changes nothing, and it runs once, on the CPU. A step over its time limit is
# reported as such and the script goes on.
#
#   bash bench/gpu.sh                 # from the repository root, after `make install`
#   LIMIT=60 bash bench/gpu.sh        # seconds per run (default 75)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench_out/gpu}
LIMIT=${LIMIT:-75}
SHARED=${SHARED:-../shared/data}
mkdir -p "$OUT"
: > "$OUT/gpu.jsonl"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
HAS_CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))")

prepare() {
  if [ -f "$SHARED/ml-100k.parquet" ] && [ ! -f "$OUT/ml100k.parquet" ]; then
    "$PY" -m recinc_cli preprocess "$SHARED/ml-100k.parquet" -o "$OUT/ml100k.parquet" --time-unit s -q
  fi
  if [ ! -f "$OUT/medium.parquet" ]; then
    "$PY" bench/synth.py --size medium --out "$OUT/medium_raw" >/dev/null
    "$PY" -m recinc_cli preprocess "$OUT"/medium_raw/day_0[1-3].parquet -o "$OUT/medium.parquet" -q
  fi
}

one() {  # data model device precision
  local data=$1 model=$2 device=$3 precision=$4 json rc
  json=$(timeout "$LIMIT" "$PY" -m recinc_cli init "$OUT/$data.parquet" -o "$OUT/run.pt" --model "$model" \
    --epochs 1 --valid-fraction 0 --device "$device" --precision "$precision" --json -q 2>"$OUT/run.err")
  rc=$?
  if [ $rc -ne 0 ]; then
    echo "{\"data\": \"$data\", \"model\": \"$model\", \"device\": \"$device\", \"precision\": \"$precision\", \"exit\": $rc}" >> "$OUT/gpu.jsonl"
    local why
    if [ $rc -eq 124 ]; then why="stopped after $LIMIT s (LIMIT)"; else why="exit $rc: $(tail -1 "$OUT/run.err")"; fi
    printf '%-8s %-7s %-7s %-5s %s\n' "$data" "$model" "$device" "$precision" "$why"
    return
  fi
  echo "$json" | "$PY" -c "
import json, sys
r = json.load(sys.stdin)
row = {'data': '$data', 'model': '$model', 'device': r['device'], 'precision': r['precision'],
       'events_per_s': r['events_per_second'], 'train_s': r['train_seconds'],
       'peak_host_mb': r['peak_memory_mb'], 'peak_gpu_mb': r.get('gpu_peak_memory_mb')}
open('$OUT/gpu.jsonl', 'a').write(json.dumps(row) + '\n')
print(f\"{row['data']:8} {row['model']:7} {row['device']:7} {row['precision']:5} {row['events_per_s']:>10,.0f} events/s \"
      f\"{row['train_s']:>7.1f} s  host {row['peak_host_mb']:>7,.0f} MiB  gpu {row['peak_gpu_mb'] or 0:>7,.0f} MiB\")"
}

prepare
for data in ml100k medium; do
  [ -f "$OUT/$data.parquet" ] || { echo "$data: no data, skipped"; continue; }
  if [ "$HAS_CUDA" = 1 ]; then
    one "$data" sasrec cuda fp32
    one "$data" sasrec cuda bf16
  fi
  one "$data" sasrec cpu fp32
  one "$data" ranker cpu fp32
done
rm -f "$OUT/run.pt" "$OUT/.run.pt.lock"
echo "results: $OUT/gpu.jsonl"
