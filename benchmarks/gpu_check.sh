#!/usr/bin/env bash
# GPU check of issue 13: the step benchmark in fp32 and bf16 for RN50 and ViT-B/16 (random weights) at 100 and
# 1000 classes, on one GPU, in under 5 minutes: s/step, peak torch.cuda.max_memory_allocated, speedup,
# prograd/coop and memory ratios; then where a step's time goes (profile_step.py: device-busy time, kernel launches,
# syncs).  Without a GPU (or with --cpu) it runs the same code on the CPU with the tiny test model in seconds.
# Run from anywhere:  bash benchmarks/gpu_check.sh [--reps N] [--cpu]
# PYTHON overrides the interpreter (default: the repository's .venv, else python3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
"$PYTHON" -c "import torch; print('torch', torch.__version__, '| CUDA available:', torch.cuda.is_available())"
timeout 200 "$PYTHON" "$root/benchmarks/gpu_check.py" "$@"
cpu=(); for a in "$@"; do [[ "$a" == --cpu ]] && cpu=(--cpu); done
exec timeout 100 "$PYTHON" "$root/benchmarks/profile_step.py" "${cpu[@]}"
