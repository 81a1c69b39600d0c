#!/usr/bin/env bash
# Proof round 4 (issue 21 §2): `adsearch calibrate` on the CIFAR regime C32, before the
# searches. References: none and the 7-point tuned-baseline grid of the regime scan (the
# search's --seed-baselines grid; calibrate's own default grid has 21 points, 80 minutes
# here), seed 0, every epoch validated. Writes benchmarks/results/proof4/calibrate.json and calibrate.png.
# Resumable: a rerun skips the references already trained (--work-dir).
#
# LM (`lm`): the L30k-d256x4 protocol of the LM searches (benchmarks/proof4_search.sh lm-*),
# references none and the seq grid of the regime scan (Dropout 0.1/0.2/0.3, variational
# 0.1/0.3), one torch thread; about 17 minutes. Writes calibrate_lm.json and calibrate_lm.png.
#
# Usage: benchmarks/proof4_calibrate.sh [cifar|lm] [CORE]
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/e2e_lib.sh
WHICH=cifar
if [[ "${1:-}" == cifar || "${1:-}" == lm ]]; then WHICH="$1"; shift; fi
CORE="${1:-1}"
SHARED="${ADSEARCH_SHARED_DATA:-$(cd .. && pwd)/shared/data}"
OUT=benchmarks/results/proof4
mkdir -p "$OUT"
if [[ "$WHICH" == lm ]]; then
  CFG='{"data": "'"$SHARED/wikitext-2"'", "protocol": "mini", "max_vocab": 2000, "train_tokens": 30000, "max_eval_tokens": 51200, "keep_best": true, "d_model": 256, "d_ff": 1024, "n_layers": 4, "lr": 0.002, "epochs": 16, "curve_points": 15}'
  exec $(pin_core "$CORE") env OMP_NUM_THREADS=1 .venv/bin/adsearch calibrate --task wikitext2 \
    --task-config "$CFG" --space seq2-2 --seed 0 --reference none --reference dropout:0.1 \
    --reference dropout:0.2 --reference dropout:0.3 --reference variational:0.1 \
    --reference variational:0.3 --workers 1 --work-dir runs/proof4/calibrate-lm \
    -o "$OUT/calibrate_lm.json" --plot "$OUT/calibrate_lm.png"
fi
CFG='{"data": "'"$SHARED/cifar10-jpg"'", "test_data": "'"$SHARED/cifar10-jpg/test"'", "image_size": 32, "train_per_class": 100, "val_per_class": 200, "split_seed": 0, "depth": 10, "width": 2, "epochs": 40, "batch_size": 50, "lr": 0.05, "weight_decay": 0.0005, "pad": 0, "flip": false, "keep_best": true}'
$(pin_core "$CORE") .venv/bin/adsearch calibrate --task cifar10 --task-config "$CFG" \
  --space conv2-3 --seed 0 --reference none --reference dropout:0.1 --reference dropout:0.2 \
  --reference dropout:0.3 --reference spatial:0.1 --reference spatial:0.2 \
  --reference dropblock:0.1:3 --reference dropblock:0.2:3 --workers 1 --work-dir runs/proof4/calibrate \
  -o "$OUT/calibrate.json" --plot "$OUT/calibrate.png"
