#!/usr/bin/env bash
# Wheels for the GPU host's Python 3.12 (manylinux x86_64), downloaded into .whl/ here, where
# `benchmarks/gpu_all.sh` installs them into /tmp/site on the device (it cannot reach a registry).
# The versions are the ones this checkout's .venv runs. .whl/ is git-ignored: name it in the
# device call's carry list (carry: [".whl"], 8 MiB; 66 MiB with --opencv is over carry's 64 MiB).
#
#   bash benchmarks/gpu_wheels.sh            # ~8 MiB: everything the GPU checks import but torch
#   bash benchmarks/gpu_wheels.sh --opencv   # + opencv-python-headless (~58 MiB): only if the image lacks
#                                            # cv2 (the H200 images of earlier sessions had it)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-.venv/bin/python}"
packages=(segment-anything pydantic pydantic_core annotated-types typing-inspection pycocotools shapely
          rich markdown-it-py mdurl pygments pyyaml safetensors)
[[ "${1:-}" == "--opencv" ]] && packages+=(opencv-python-headless)
pins=()
for name in "${packages[@]}"; do
    version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
    pins+=("$name==$version")
done
mkdir -p .whl
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d .whl "${pins[@]}" 2> >(grep -v "is ignored: it is neither" >&2)
du -sh .whl && ls .whl
