#!/usr/bin/env bash
# Every GPU benchmark in one command, for a machine with one CUDA GPU (not yet run on one). Four stages, each under its
# own time limit so that together they fit a 10-minute command (about 9 min at most, stage limits summed), each
# stage's output written under $OUT as it comes (a stage past its limit keeps what it printed, and the next one runs):
#   1. tests/test_cuda.py: the native kernel's Triton kernels compiled on this GPU, checked against eager (needs pytest)
#   2. benchmarks/child_speed.py: training steps, native activations against the compiled candidate
#   3. benchmarks/child_speed.py --sample: ResNet-20 steps at batch 128, 10 one-unit and 10 two-unit functions
#   4. benchmarks/paper_child.py: one paper child (compiled and eager), and 4 children sharing the GPU
# Usage, from the repository root (torch with CUDA and torchvision; not Ray, not mnist1d, no data, no network):
#   OUT=/some/folder COMMIT=<the commit's hash> bash benchmarks/gpu.sh
# COMMIT names the code where the copy has no .git (a device machine's). $OUT/header.txt holds the GPU, torch, commit
# and date; the summary at the end is what docs/benchmarks.md quotes.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"

"$PY" - <<'PY' || exit 1
import sys, torch
if not torch.cuda.is_available():
    sys.exit("benchmarks/gpu.sh: torch sees no CUDA device")
print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PY
{
  "$PY" -c "import torch; print(f'GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}')"
  echo "commit: ${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo 'unknown (set COMMIT)')}$(
    [ -z "${COMMIT:-}" ] && git rev-parse --git-dir >/dev/null 2>&1 && ! git diff --quiet && echo ' (dirty)')"
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 2^20}' /proc/meminfo)"
} | tee "$OUT/header.txt"

stage() {  # stage NAME SECONDS COMMAND...: run it under its limit, its output to the terminal and $OUT/NAME.txt
  local name=$1 limit=$2
  shift 2
  echo; echo "== $name (at most $limit s): $* =="
  local start=$SECONDS
  timeout --signal=INT --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
  local code=${PIPESTATUS[0]}
  if [ "$code" = 124 ] || [ "$code" = 137 ]; then
    echo "$name: stopped at its limit of $limit s (what it printed is in $OUT/$name.txt)" | tee -a "$OUT/$name.txt"
  elif [ "$code" != 0 ]; then
    echo "$name: exit $code after $((SECONDS - start)) s" | tee -a "$OUT/$name.txt"
  fi
}

stage test_cuda 120 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py
stage child_speed 120 "$PY" benchmarks/child_speed.py --rounds 3 --json "$OUT/child_speed.json"
stage sample 100 "$PY" benchmarks/child_speed.py --sample 10 --sample-model resnet20 --rounds 3 --steps 10
stage paper_child 180 "$PY" benchmarks/paper_child.py --variants paper,eager --share 4 --json "$OUT/paper_child.json"

echo; echo "== summary =="
cat "$OUT/header.txt"
tail -n 1 "$OUT/test_cuda.txt" 2>/dev/null
grep -sh "^|" "$OUT/child_speed.txt" || true
grep -shE "median|faster|diverged, not" "$OUT/sample.txt" || true
grep -sh "^summary" "$OUT/paper_child.txt" || true
echo "(raw results in $OUT)"
