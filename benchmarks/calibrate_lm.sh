#!/usr/bin/env bash
# Issue 19 §3, Done means: `adsearch calibrate` on the round-3 LM protocol (L2 of
# benchmarks/proof3_search.sh: WikiText-2 mini, the first 30k training tokens, vocabulary
# capped at 2,000, 2-layer d=128 Transformer LM, 16 epochs), eight references as the audit
# had (none, Dropout 0.1/0.2/0.3/0.4, variational 0.1/0.2/0.3), seed 0 as the round-3
# searches (--child-seed 0), validation at every epoch. One child at a time on one core.
#
# Usage: benchmarks/calibrate_lm.sh        (CORE=1 by default; WORK=... to move the work dir)
# Resumable: rerun the same command after an interruption; finished runs are kept in $WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${ADSEARCH_SHARED_DATA:-$(cd .. && pwd)/shared/data}"
CORE="${CORE:-1}"
WORK="${WORK:-/tmp/adsearch-calibrate-lm}"
OUT=benchmarks/results/calibrate
mkdir -p "$OUT"
CFG='{"data": "'"$SHARED/wikitext-2"'", "protocol": "mini", "max_vocab": 2000, "train_tokens": 30000, "d_model": 128, "d_ff": 512, "epochs": 16}'
refs=()
for r in none dropout:0.1 dropout:0.2 dropout:0.3 dropout:0.4 variational:0.1 variational:0.2 variational:0.3; do
  refs+=(--reference "$r")
done
taskset -c "$CORE" .venv/bin/adsearch calibrate --task wikitext2 --task-config "$CFG" \
  "${refs[@]}" --seed 0 --workers 1 --work-dir "$WORK" \
  -o "$OUT/lm.json" --plot "$OUT/lm.png" 2>&1 | tee "$OUT/lm.txt"
