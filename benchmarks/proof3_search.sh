#!/usr/bin/env bash
# Proof round 3 (issue 15 §2): the controller and random search, each with ASHA, side by side
# at the same wall budget, each pinned to its own core (taskset), in the regime chosen by
# benchmarks/regime_study.py. Selection is on the validation split only; the test split is
# read only by `adsearch verify` (benchmarks/proof3_verify.sh).
#
# Usage: benchmarks/proof3_search.sh cifar|lm [MINUTES]      (default 17 minutes)
#
# Protocols (ours; see BENCHMARKS.md "Proof, round 3"):
#   cifar: C1 of the regime study: WRN-10-4 at 16 px, 50 train images/class, a disjoint
#          100/class validation split of cifar10-jpg/train, no augmentation, 30 epochs, batch
#          50; validation every 5 epochs and at each rung. Space conv-3+off.
#   lm:    L2: WikiText-2 mini, the first 30k training tokens, vocabulary capped at 2,000,
#          2-layer d=128 Transformer LM, 16 epochs. Space seq-2+off.
# ASHA: rungs from --min-epochs by x3 up to the full child; every child has seed 0 (common
# random numbers), so rewards differ by pattern.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/e2e_lib.sh
WHICH="${1:?usage: proof3_search.sh cifar|lm [MINUTES]}"
MINUTES="${2:-17}"
SHARED="${ADSEARCH_SHARED_DATA:-$(cd .. && pwd)/shared/data}"
RUNS="${ADSEARCH_RUNS:-runs/proof3}"
OUT=benchmarks/results/proof3
mkdir -p "$OUT"
case "$WHICH" in
  cifar)
    TASK=cifar10 SPACE=conv-3+off MIN=3 MAX=30
    CFG='{"data": "'"$SHARED/cifar10-jpg"'", "test_data": "'"$SHARED/cifar10-jpg/test"'", "train_per_class": 50, "val_per_class": 100, "split_seed": 0, "image_size": 16, "depth": 10, "width": 4, "epochs": 30, "batch_size": 50, "lr": 0.05, "weight_decay": 0.0005, "pad": 0, "flip": false, "eval_every": 5}' ;;
  lm)
    TASK=wikitext2 SPACE=seq-2+off MIN=2 MAX=16
    CFG='{"data": "'"$SHARED/wikitext-2"'", "protocol": "mini", "max_vocab": 2000, "train_tokens": 30000, "d_model": 128, "d_ff": 512, "epochs": 16, "curve_points": 0}' ;;
  *) echo "usage: proof3_search.sh cifar|lm [MINUTES]" >&2; exit 2 ;;
esac
core=0
for ctl in transformer random; do
  $(pin_core "$core") .venv/bin/adsearch start --task "$TASK" --name "p3-$WHICH-$ctl" --run-dir "$RUNS/p3-$WHICH-$ctl" \
    --task-config "$CFG" --space "$SPACE" --controller "$ctl" --workers 1 --batch-size 4 \
    --scheduler asha --min-epochs "$MIN" --max-epochs "$MAX" --eta 3 \
    --child-seed 0 --budget-minutes "$MINUTES" --seed 0
  core=$((core + 1))
done
for ctl in transformer random; do
  finish_search "p3-$WHICH-$ctl" "$RUNS/p3-$WHICH-$ctl" "$OUT/$WHICH-$ctl.json"
done
