#!/usr/bin/env bash
# End-to-end proof on CIFAR-10-mini (issue: learned patterns vs hand-designed dropout).
#
# Runs an AutoDropout search (transformer controller) and a random search with the same
# space, child protocol and wall budget side by side, one CPU worker each, then exports the
# best pattern of each. Selection uses the validation split only (held out of train/);
# cifar10-jpg/test is never seen by the search. Retrain and test with
# benchmarks/retrain_cifar_mini.sh.
#
# Usage: benchmarks/search_cifar_mini.sh [MINUTES]   (default 55)
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES="${1:-55}"
DATA="${ADSEARCH_SHARED_DATA:-$(cd .. && pwd)/shared/data}/cifar10-jpg"
RUNS="${ADSEARCH_RUNS:-runs/e2e}"
OUT=benchmarks/results/e2e
mkdir -p "$OUT"
# Search proxy child (ours): WRN-10-2 on 300/class train + disjoint 100/class validation,
# 2 epochs, so ~80 children fit per search in the budget on one core.
CFG='{"data": "'"$DATA"'", "train_per_class": 300, "val_per_class": 100, "split_seed": 0, "depth": 10, "width": 2, "epochs": 2, "batch_size": 64, "lr": 0.05}'
for ctl in transformer random; do
  .venv/bin/adsearch start --task cifar10 --name "cifar-mini-$ctl" --run-dir "$RUNS/cifar-mini-$ctl" \
    --task-config "$CFG" --controller "$ctl" --workers 1 --batch-size 8 \
    --budget-minutes "$MINUTES" --seed 0
done
for ctl in transformer random; do
  while .venv/bin/adsearch status "cifar-mini-$ctl" --run-dir "$RUNS/cifar-mini-$ctl" --json \
      | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s.get("daemon", {}).get("alive") else 1)' 2>/dev/null; do
    sleep 30
  done
  .venv/bin/adsearch status "cifar-mini-$ctl" --run-dir "$RUNS/cifar-mini-$ctl"
  .venv/bin/adsearch export "cifar-mini-$ctl" --run-dir "$RUNS/cifar-mini-$ctl" --best -o "$OUT/cifar-mini-$ctl.json"
  .venv/bin/adsearch status "cifar-mini-$ctl" --run-dir "$RUNS/cifar-mini-$ctl" --json > "$OUT/cifar-mini-$ctl.status.json"
done
