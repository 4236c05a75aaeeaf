#!/usr/bin/env bash
# PA-SAM adapter GPU check: training steps/s at batch 16 and peak memory of the vit_h adapter
# (SAM's vit_h decoder side with random weights, bf16 autocast, cached = synthetic random
# embeddings and guiding images; the 632 M encoder is not needed and not built), on one NVIDIA
# GPU, in about a minute. Without CUDA it says so and exits 0. Arguments go to gpu_adapter.py.
#
#   bash benchmarks/gpu_adapter.sh [--model vit_h] [--batch 16] [--steps 40]
#   PYTHON=/path/to/python bash benchmarks/gpu_adapter.sh
#
# Needs torch (a CUDA build) and segment-anything only: the script imports the adapter model,
# its losses and step, and SAM's architecture numbers, nothing that needs pydantic or shapely.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

probe='import torch, segment_anything, risbench_builder.adapter.model, risbench_builder.adapter.step, risbench_builder.segment.sam'
if ! err=$("$PY" -c "$probe" 2>&1); then
    echo "gpu_adapter: cannot import the adapter model with $PY: $(echo "$err" | tail -n 1)"
    echo "gpu_adapter: install torch (CUDA build) and segment-anything (or put it on PYTHONPATH), or set PYTHON=..."
    exit 2
fi
exec timeout 170 "$PY" benchmarks/gpu_adapter.py "$@"
