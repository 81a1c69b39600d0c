#!/usr/bin/env bash
# Proof round 3 (issue 15 §3): `adsearch verify` of the controller search's best pattern, with
# random search's best (--compare), none and every tuned baseline, on 5 paired seeds, test
# split. Baseline settings are tuned on validation (verify's grid, seed 10000); the best
# baseline is picked by validation reward. Pinned to one core (CORE, default 0).
#
# Usage: benchmarks/proof3_verify.sh cifar|lm [CORE]      (after benchmarks/proof3_search.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/e2e_lib.sh
WHICH="${1:?usage: proof3_verify.sh cifar|lm [CORE]}"
CORE="${2:-0}"
RUNS="${ADSEARCH_RUNS:-runs/proof3}"
OUT=benchmarks/results/proof3
mkdir -p "$OUT"
$(pin_core "$CORE") .venv/bin/adsearch verify "p3-$WHICH-transformer" --run-dir "$RUNS/p3-$WHICH-transformer" \
  --top-k 1 --seeds 5 --compare "$RUNS/p3-$WHICH-random" --workers 1 \
  -o "$OUT/$WHICH-verify.json" --png "$OUT/$WHICH-verify.png"
