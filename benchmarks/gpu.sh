#!/usr/bin/env bash
# Every GPU benchmark in one command, for a machine with one CUDA GPU (estimated 8 minutes on an H100-class GPU; not
# yet run on one), after the native kernel's Triton kernels are checked against eager there (tests/test_cuda.py, needs
# pytest):
#   bash benchmarks/gpu.sh            (from the repository root; needs torch with CUDA and torchvision, not Ray)
# It prints each benchmark's table, then a summary to paste into docs/benchmarks.md with the date, GPU and commit.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}

"$PY" - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("benchmarks/gpu.sh: torch sees no CUDA device")
print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PY
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"

echo; echo "== tests/test_cuda.py (the native kernel's Triton kernels compiled on this GPU, against eager) =="
"$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.txt" ||
  echo "tests/test_cuda.py FAILED on this GPU (above); the timings follow"

echo; echo "== benchmarks/child_speed.py (training steps: native activations vs the compiled candidate) =="
"$PY" benchmarks/child_speed.py --rounds 5 --json "$OUT/child_speed.json" | tee "$OUT/child_speed.txt"

echo; echo "== benchmarks/child_speed.py --sample (ResNet-20 steps, batch 128: 10 one-unit and 10 two-unit functions, eager and native vs relu) =="
"$PY" benchmarks/child_speed.py --sample 10 --sample-model resnet20 --rounds 3 --steps 10 | tee "$OUT/sample.txt"

echo; echo "== benchmarks/paper_child.py (one paper child, every option; children sharing the GPU) =="
"$PY" benchmarks/paper_child.py --variants all --share 2,4,8 --json "$OUT/paper_child.json" | tee "$OUT/paper_child.txt"

echo; echo "== summary =="
tail -n 1 "$OUT/test_cuda.txt"
grep -h "^|" "$OUT/child_speed.txt" || true
grep -hE "median|faster|diverged, not" "$OUT/sample.txt" || true
grep -h "^summary" "$OUT/paper_child.txt" || true
echo "(raw results in $OUT)"
