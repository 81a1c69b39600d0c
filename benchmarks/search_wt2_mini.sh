#!/usr/bin/env bash
# End-to-end proof on WikiText-2 mini: an AutoDropout search (transformer controller) for the
# Transformer LM, then export of its best full-length pattern.
#
# Search proxy child (ours): the bench_baselines.py LM protocol (2-layer d=128 Pre-LN
# Transformer, BPTT 64, batch 16; train = test.txt, validation = first half of valid.txt) cut
# to half an epoch, validation capped at 32,768 tokens, no test. Reward = 80 / validation
# perplexity. Every child shares seed 0 (--child-seed). The second half of valid.txt (the
# test split of the mini protocol) is never seen by the search.
#
# Usage: benchmarks/search_wt2_mini.sh [MINUTES] [CORE]   (defaults: 50, 0)
#   The daemon is pinned to CORE with taskset when the machine has 2+ cores, so it can run
#   beside another search (1 torch thread per child). Retrain and transfer with
#   benchmarks/retrain_wt2_mini.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/e2e_lib.sh
MINUTES="${1:-50}"
CORE="${2:-0}"
DATA="${ADSEARCH_SHARED_DATA:-$(cd .. && pwd)/shared/data}/wikitext-2"
RUNS="${ADSEARCH_RUNS:-runs/e2e}"
OUT=benchmarks/results/e2e
NAME=wt2-mini-transformer
mkdir -p "$OUT"
CFG='{"data": "'"$DATA"'", "protocol": "mini", "epochs": 0.5, "curve_points": 0, "test": false, "max_eval_tokens": 32768}'
$(pin_core "$CORE") .venv/bin/adsearch start --task wikitext2 --name "$NAME" --run-dir "$RUNS/$NAME" \
  --task-config "$CFG" --controller transformer --workers 1 --batch-size 4 \
  --budget-minutes "$MINUTES" --seed 0 --child-seed 0
finish_search "$NAME" "$RUNS/$NAME" "$OUT/$NAME.json"
