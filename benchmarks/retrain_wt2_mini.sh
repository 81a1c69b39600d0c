#!/usr/bin/env bash
# Retrain the WikiText-2 winner of benchmarks/search_wt2_mini.sh on the bench_baselines.py LM
# protocol (1 epoch, 3 seeds; test perplexity on the second half of valid.txt), and transfer
# the same pattern file, unchanged, to the Multi30k En-Fr translation model on the
# bench_baselines.py MT protocol (1 epoch, 3 seeds; BLEU on test_2016_flickr). The two run
# side by side, pinned to one core each. The baseline rows (none, Dropout, variational) are
# in benchmarks/results/baselines.md, made by the same protocols and seeds.
#
# Usage: benchmarks/retrain_wt2_mini.sh [PATTERN_FILE]
#        (default: benchmarks/results/e2e/wt2-mini-transformer.json)
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/e2e_lib.sh
SHARED="${ADSEARCH_SHARED_DATA:-$(cd .. && pwd)/shared/data}"
OUT=benchmarks/results/e2e
PAT="${1:-$OUT/wt2-mini-transformer.json}"
name="$(basename "$PAT" .json)"
printf '{"protocol": "mini", "epochs": 1.0, "curve_points": 0}\n' > "$OUT/retrain_lm_config.json"
printf '{"epochs": 1.0}\n' > "$OUT/retrain_mt_config.json"
$(pin_core 0) .venv/bin/adsearch train --task wikitext2 --data "$SHARED/wikitext-2" \
  --pattern "$PAT" --seeds 3 --threads 1 --config "$OUT/retrain_lm_config.json" \
  --json-out "$OUT/retrain-$name.json" &
lm=$!
$(pin_core 1) .venv/bin/adsearch train --task translation --data "$SHARED/multi30k-en-fr" \
  --pattern "$PAT" --seeds 3 --threads 1 --config "$OUT/retrain_mt_config.json" \
  --json-out "$OUT/transfer-$name-multi30k.json" &
mt=$!
wait "$lm"
wait "$mt"
