#!/usr/bin/env bash
# All GPU checks in one prepared run (sam-refine, CroBIM, PA-SAM adapter, the whole sam-refine
# stage against the encoder), sized to fit one short lease on a single NVIDIA GPU: about 8
# minutes in all (at most 520 s of budgets). Each check keeps its own budget;
# a failing check does not stop the others. Logs go to $OUT (or ./gpu-logs) as gpu_*.log.
#
#   bash benchmarks/gpu_all.sh
#
# Packages the GPU image lacks travel as wheels in .whl/ (`bash benchmarks/gpu_wheels.sh` here,
# before the call: segment-anything, pydantic + core, pycocotools, shapely, rich, PyYAML, ...
# for its Python 3.12; `--opencv` adds cv2); they are installed into /tmp/site first. The
# first lines of gpu_env.log name any import still missing.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOG="${OUT:-gpu-logs}"
mkdir -p "$LOG"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$LOG/gpu_env.log"
python3 -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__)' | tee -a "$LOG/gpu_env.log"

run() {  # name, seconds, command...
    local name=$1 secs=$2; shift 2
    echo "== $name (budget ${secs} s)"
    local t0=$SECONDS
    timeout "$secs" "$@" 2>&1 | tee "$LOG/$name.log"
    echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s" | tee -a "$LOG/$name.log"
}
python3 - <<'PY' | tee -a "$LOG/gpu_env.log"
import importlib
missing = [m for m in ("cv2", "PIL", "yaml", "rich", "pydantic", "pycocotools", "shapely", "segment_anything",
                       "safetensors") if importlib.util.find_spec(m) is None]
print("missing imports:", ", ".join(missing) or "none", "(bash benchmarks/gpu_wheels.sh [--opencv] before the call)")
PY
# the whole sam-refine stage first: issue 15's check, the one a short lease must not lose
run gpu_refine_pipeline 140 python3 benchmarks/gpu_refine_pipeline.py --budget-s 115
run gpu_refine 150 bash benchmarks/gpu_refine.sh --budget-s 120
run gpu_adapter 100 bash benchmarks/gpu_adapter.sh --steps 30
run gpu_crobim 130 bash benchmarks/gpu_crobim.sh --steps 10
