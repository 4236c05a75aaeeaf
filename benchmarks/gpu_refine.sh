#!/usr/bin/env bash
# sam-refine GPU check: encoder and full-refine images/s for vit_b and vit_h (random weights,
# bf16 autocast) on one NVIDIA GPU, in a few minutes. Prints the GPU name and a small table.
# Without CUDA it says so and exits 0. Arguments go to benchmarks/gpu_refine.py.
#
#   bash benchmarks/gpu_refine.sh [--models vit_b vit_h] [--batch 8] [--images 24]
#   PYTHON=/path/to/python bash benchmarks/gpu_refine.sh      # another interpreter
#
# Needs torch (a CUDA build), segment-anything and safetensors. The package is used from this
# checkout; `pip install -e .[sam]` runs only when that import fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

probe='import torch, segment_anything, safetensors, risbench_builder.segment.sam'
if ! "$PY" -c "$probe" 2>/dev/null; then
    echo "gpu_refine: risbench_builder.segment.sam not importable with $PY; trying pip install -e .[sam]"
    "$PY" -m pip install --quiet -e ".[sam]" || true
    if ! err=$("$PY" -c "$probe" 2>&1); then
        echo "gpu_refine: still cannot import the SAM backend: $(echo "$err" | tail -n 1)"
        echo "gpu_refine: install torch (CUDA build), segment-anything and safetensors, or set PYTHON=..."
        exit 2
    fi
fi
exec timeout 290 "$PY" benchmarks/gpu_refine.py "$@"
