#!/usr/bin/env bash
# End-to-end proof on CIFAR-10-mini (issue: learned patterns vs hand-designed dropout).
#
# Runs an AutoDropout search (transformer controller) and a random search with the same
# space, child protocol and wall budget side by side, each pinned to its own CPU core
# (taskset; the daemon then gives each child 1 torch thread, so the two do not thrash), then
# exports the best full-length pattern of each. Selection uses the validation split only
# (held out of train/); cifar10-jpg/test is never seen by the search. Retrain and test with
# benchmarks/retrain_cifar_mini.sh.
#
# Search proxy child (ours): WRN-10-2 on 300/class train + disjoint 100/class validation,
# EPOCHS epochs (default 3). Ranking aids (second run onwards):
#   --child-seed 0          every child shares init, data order and augmentation, so rewards
#                           differ by pattern rather than by seed (common random numbers);
#   --prune-at-epoch 1      children below the 40% quantile of earlier children's epoch-1
#                           accuracy stop there (truncated rewards are marked, never exported).
#
# Usage: benchmarks/search_cifar_mini.sh [MINUTES] [TAG]   (defaults: 45, v2)
#   first run (2026-11-26, TAG v1): 55 minutes, 2 epochs, no child seed, no pruning, batch 8.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/e2e_lib.sh
MINUTES="${1:-45}"
TAG="${2:-v2}"
EPOCHS="${EPOCHS:-3}"
DATA="${ADSEARCH_SHARED_DATA:-$(cd .. && pwd)/shared/data}/cifar10-jpg"
RUNS="${ADSEARCH_RUNS:-runs/e2e-$TAG}"
OUT=benchmarks/results/e2e
mkdir -p "$OUT"
CFG='{"data": "'"$DATA"'", "train_per_class": 300, "val_per_class": 100, "split_seed": 0, "depth": 10, "width": 2, "epochs": '"$EPOCHS"', "batch_size": 64, "lr": 0.05}'
core=0
for ctl in transformer random; do
  $(pin_core "$core") .venv/bin/adsearch start --task cifar10 --name "cifar-mini-$ctl" --run-dir "$RUNS/cifar-mini-$ctl" \
    --task-config "$CFG" --controller "$ctl" --workers 1 --batch-size 4 \
    --child-seed 0 --prune-at-epoch 1 --prune-quantile 0.4 \
    --budget-minutes "$MINUTES" --seed 0
  core=$((core + 1))
done
for ctl in transformer random; do
  finish_search "cifar-mini-$ctl" "$RUNS/cifar-mini-$ctl" "$OUT/cifar-mini-$TAG-$ctl.json"
done
