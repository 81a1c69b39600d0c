#!/usr/bin/env bash
# Same-session anchors for benchmarks/retrain_cifar_mini.sh: retrain "none" and DropBlock
# (0.1, block 5) with `adsearch train` on exactly the retraining protocol and seeds, so the
# learned rows are compared with baselines from the same code and the same load, not only
# with benchmarks/results/baselines.md.
#
# Usage: benchmarks/anchor_cifar_mini.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${ADSEARCH_SHARED_DATA:-$(cd .. && pwd)/shared/data}/cifar10-jpg"
OUT=benchmarks/results/e2e
CFG="$OUT/retrain_config.json"
printf '{"train_per_class": 500, "val_per_class": 100, "split_seed": 0, "depth": 10, "width": 2, "batch_size": 64, "lr": 0.05}\n' > "$CFG"
for spec in "none" "dropblock --drop-prob 0.1 --block-size 5"; do
  read -r -a args <<< "$spec"
  .venv/bin/adsearch train --task cifar10 --data "$DATA" --test-data "$DATA/test" \
    --baseline "${args[@]}" --seeds 3 --epochs 4 --threads 1 --config "$CFG" \
    --json-out "$OUT/anchor-cifar-mini-${args[0]}.json"
done
