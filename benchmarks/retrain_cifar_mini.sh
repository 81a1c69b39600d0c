#!/usr/bin/env bash
# Retrain the exported winners of benchmarks/search_cifar_mini.sh on the CIFAR-10-mini
# protocol of benchmarks/bench_baselines.py (WRN-10-2, 500/class train, disjoint 100/class
# validation from train/, 4 epochs) with 3 seeds, and report held-out test accuracy on
# cifar10-jpg/test. The hand-designed rows are in benchmarks/results/baselines.md, made by
# the same protocol and seeds.
#
# Usage: benchmarks/retrain_cifar_mini.sh [PATTERN_FILE ...]
#        (default: benchmarks/results/e2e/cifar-mini-v2-{transformer,random}.json)
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/e2e_lib.sh
DATA="${ADSEARCH_SHARED_DATA:-$(cd .. && pwd)/shared/data}/cifar10-jpg"
OUT=benchmarks/results/e2e
mkdir -p "$OUT"
CFG="$OUT/retrain_config.json"
printf '{"train_per_class": 500, "val_per_class": 100, "split_seed": 0, "depth": 10, "width": 2, "batch_size": 64, "lr": 0.05}\n' > "$CFG"
files=("$@")
[[ ${#files[@]} -gt 0 ]] || files=("$OUT/cifar-mini-v2-transformer.json" "$OUT/cifar-mini-v2-random.json")
# one file per core, side by side (taskset; 1 torch thread each), when there are 2+ cores
cores="$(nproc)"
i=0
pids=()
for f in "${files[@]}"; do
  name="$(basename "$f" .json)"
  $(pin_core "$((i % cores))") .venv/bin/adsearch train --task cifar10 --data "$DATA" --test-data "$DATA/test" \
    --pattern "$f" --seeds 3 --epochs 4 --threads 1 --config "$CFG" \
    --json-out "$OUT/retrain-$name.json" > "$OUT/retrain-$name.log" 2>&1 &
  pids+=($!)
  i=$((i + 1))
  if [[ $((i % cores)) -eq 0 || "$cores" -lt 2 ]]; then for p in "${pids[@]}"; do wait "$p"; done; pids=(); fi
done
for p in "${pids[@]}"; do wait "$p"; done
for f in "${files[@]}"; do tail -n 12 "$OUT/retrain-$(basename "$f" .json).log"; done
