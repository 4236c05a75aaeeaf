#!/usr/bin/env bash
# CroBIM GPU check: training images/s and peak memory of the paper configuration (Swin-B +
# BERT-base, random weights), bf16 autocast, batch 8 at 480, on one NVIDIA GPU, in < 5 minutes.
# Without CUDA it says so and exits 0. Arguments go to benchmarks/gpu_crobim.py.
#
#   bash benchmarks/gpu_crobim.sh [--config crobim_convnext_b] [--batch 8] [--steps 15]
#   PYTHON=/path/to/python bash benchmarks/gpu_crobim.sh
#
# Needs torch (a CUDA build), timm, transformers and safetensors (the `train` extra); the
# package is used from this checkout and `pip install -e .[train]` runs only when imports fail.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

probe='import torch, timm, transformers, safetensors, risbench_builder.crobim.model'
if ! "$PY" -c "$probe" 2>/dev/null; then
    echo "gpu_crobim: CroBIM dependencies not importable with $PY; trying pip install -e .[train]"
    "$PY" -m pip install --quiet -e ".[train]" || true
    if ! err=$("$PY" -c "$probe" 2>&1); then
        echo "gpu_crobim: still cannot import the trainer: $(echo "$err" | tail -n 1)"
        echo "gpu_crobim: install torch (CUDA build), timm, transformers and safetensors, or set PYTHON=..."
        exit 2
    fi
fi
exec timeout 290 "$PY" benchmarks/gpu_crobim.py "$@"
