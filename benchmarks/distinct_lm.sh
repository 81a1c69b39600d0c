#!/usr/bin/env bash
# Issue 19, Done means: how many distinct full-budget patterns a 20-minute LM search reaches.
# The round-3 LM search protocol exactly (benchmarks/proof3_search.sh lm: L2, seq-2+off, the
# transformer controller, batch 4, ASHA 2/6/16 eta 3, every child seed 0, 20 minutes), one
# search pinned to one core, then benchmarks/distinct_patterns.py on its store.
#
# Usage: benchmarks/distinct_lm.sh NAME [CORE]
# "before" was this command run from a worktree of f073540 (round 3's code); "after" from this
# checkout. Figures: BENCHMARKS.md "Issue 19: the search learns".
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/e2e_lib.sh
NAME="${1:?usage: distinct_lm.sh NAME [CORE]}"
CORE="${2:-1}"
SHARED="${ADSEARCH_SHARED_DATA:-$(cd .. && pwd)/shared/data}"
RUNS="${ADSEARCH_RUNS:-runs/distinct}"
OUT=benchmarks/results/distinct
mkdir -p "$OUT"
CFG='{"data": "'"$SHARED/wikitext-2"'", "protocol": "mini", "max_vocab": 2000, "train_tokens": 30000, "d_model": 128, "d_ff": 512, "epochs": 16, "curve_points": 0}'
taskset -c "$CORE" .venv/bin/adsearch start --task wikitext2 --name "$NAME" --run-dir "$RUNS/$NAME" \
  --task-config "$CFG" --space seq-2+off --controller transformer --workers 1 --batch-size 4 \
  --scheduler asha --min-epochs 2 --max-epochs 16 --eta 3 \
  --child-seed 0 --budget-minutes 20 --seed 0
finish_search "$NAME" "$RUNS/$NAME" "$OUT/$NAME-best.json"
.venv/bin/python benchmarks/distinct_patterns.py "$RUNS/$NAME/adsearch.db" --json "$OUT/$NAME.json"
