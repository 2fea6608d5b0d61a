#!/usr/bin/env bash
# The embedding-table benchmark's part 1 on a GPU machine (a few minutes on an H200): lookup,
# row-wise / sparse / dense Adagrad steps on 1M, 10M and 50M rows × 64, the tables in device
# memory (the budget is the device's), with the device's peak bytes recorded.
#
#   bash experiments/embedding_benchmark_gpu.sh
#
# Needs a CUDA jax (jax[cuda12] at this repo's jax version) in $PYTHON (default: python).
# Writes experiments/results/embeddings_gpu.json and prints the table.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"

"$PYTHON" -c 'import jax; assert jax.default_backend() == "gpu", f"no GPU: {jax.devices()}"'
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
timeout 480 "$PYTHON" experiments/embedding_benchmark.py --sizes 1000000 10000000 50000000 \
  --device-steps 0 --out experiments/results/embeddings_gpu.json
