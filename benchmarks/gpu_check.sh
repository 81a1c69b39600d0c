#!/usr/bin/env bash
# GPU check, about 8 minutes on one H100. Prints everything and writes it to $OUT (or ./gpu-check).
#   1. WRN-28-10 training-step time with none, DropBlock and patterns (bf16 autocast);
#   2. the mask-op benchmark on CUDA, and the CUDA op tests;
#   3. a 3-minute `adsearch start` with real CIFAR-10 children on the GPU, then `status`;
#   4. `adsearch verify` of that search over the same GPU slots (tiny: 30 steps a run, the
#      test slice shipped in tests/fixtures), writing verify.json and verify.png.
# Run from the repository root after `make install` (or with .venv carried over).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check}"
mkdir -p "$out"
py=.venv/bin/python
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
$py benchmarks/bench_step.py --device cuda --depth 28 --width 10 --batch 128 --rounds 3 --steps 5 | tee "$out/step.md"
$py benchmarks/bench_masks.py --device cuda --quick | tee "$out/masks.md"
$py -m pytest -q tests/test_ops_cuda.py | tee "$out/ops_cuda.txt"
runs="$(mktemp -d)"
ADSEARCH_RUNS="$runs" .venv/bin/adsearch start --task cifar10 --name gpu --gpus 0 --slots-per-gpu 2 \
  --budget-minutes 3 --batch-size 4 | tee "$out/start.txt"
sleep 200
ADSEARCH_RUNS="$runs" .venv/bin/adsearch stop gpu || true
ADSEARCH_RUNS="$runs" .venv/bin/adsearch status gpu | tee "$out/status.txt"
ADSEARCH_RUNS="$runs" .venv/bin/adsearch status gpu --json > "$out/status.json"
ADSEARCH_RUNS="$runs" .venv/bin/adsearch verify gpu --top-k 1 --seeds 2 --baselines dropout \
  --child-steps 30 --test-data tests/fixtures/data/cifar10-jpg/test | tee "$out/verify.txt"
cp "$runs/gpu-verify/verify.json" "$runs/gpu-verify/verify.png" "$out/"
