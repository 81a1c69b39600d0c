#!/usr/bin/env bash
# Proof round 4 (issue 21 §3): `adsearch verify` of the four searches of
# benchmarks/proof4_search.sh in one run: the TPE search's export, the three others as
# --compare (the paper's v1 space next to v2: same sites, each pattern decoded with its own
# space), none and each family's tuned baseline (the rate the regime scan picked on
# validation, at its own best epoch: keep_best), 5 paired seeds, test split. The best
# baseline is picked by validation reward; nothing is selected on test.
#
#   cifar: C32; tuned Dropout 0.2, SpatialDropout 0.1, DropBlock 0.2 b3 -> verify.json/.png
#   lm:    L30k-d256x4; tuned Dropout 0.3, variational 0.1 -> verify_lm.json/.png
#
# Usage: benchmarks/proof4_verify.sh cifar|lm [WORKERS]   (WORKERS children at a time, one
# torch thread each; default 2, both cores). Resumable: run it again after a stop or a kill
# and finished runs are kept (docs/verify.md, "Interrupted, repeated").
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH="${1:?usage: proof4_verify.sh cifar|lm [WORKERS]}"
WORKERS="${2:-2}"
RUNS="${ADSEARCH_RUNS:-runs/proof4}"
OUT=benchmarks/results/proof4
case "$WHICH" in
  cifar) P=p4-cifar-; TUNED=(--tuned dropout:0.2 --tuned spatial:0.1 --tuned dropblock:0.2:3)
         REPORT=verify ;;
  lm)    P=p4-lm-; TUNED=(--tuned dropout:0.3 --tuned variational:0.1); REPORT=verify_lm ;;
  *) echo "usage: proof4_verify.sh cifar|lm [WORKERS]" >&2; exit 2 ;;
esac
OMP_NUM_THREADS=1 exec .venv/bin/adsearch verify "${P}tpe" --run-dir "$RUNS/${P}tpe" \
  --top-k 1 --seeds 5 --compare "$RUNS/${P}reinforce" --compare "$RUNS/${P}random" \
  --compare "$RUNS/${P}v1" "${TUNED[@]}" --workers "$WORKERS" \
  -o "$OUT/$REPORT.json" --png "$OUT/$REPORT.png"
