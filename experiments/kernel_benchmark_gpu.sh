#!/usr/bin/env bash
# The kernel benchmark on a GPU machine (< 3 min on an H200): the Pallas kernels against
# the naive baselines, with achieved memory bandwidth as a fraction of the device's peak.
#
#   bash experiments/kernel_benchmark_gpu.sh [PEAK_TBPS]    # default 4.8 (H200 HBM3e)
#
# Needs a CUDA jax (jax[cuda12] at this repo's jax version) in $PYTHON (default: python).
# Writes experiments/results/kernels_gpu.json and prints one line per configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"

"$PYTHON" -c 'import jax; assert jax.default_backend() == "gpu", f"no GPU: {jax.devices()}"'
# Without `pip install -e .`, import kernels/ under its installed name through a link.
if ! "$PYTHON" -c 'import recjax_kernels' 2>/dev/null; then
  link_dir="$(mktemp -d)"
  ln -s "$PWD/kernels" "$link_dir/recjax_kernels"
  export PYTHONPATH="$link_dir${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
timeout 170 "$PYTHON" experiments/kernel_benchmark.py --gpu --peak-tbps "${1:-4.8}"
