"""The paper-child benchmark runs on a CPU in a handful of steps (its figures come from a GPU: benchmarks/gpu.sh)."""
import subprocess
import sys

from conftest import REPO


def test_paper_child_benchmark_runs_on_cpu_and_extrapolates_a_child(tmp_path):
    out = tmp_path / "paper_child.json"
    proc = subprocess.run([sys.executable, "benchmarks/paper_child.py", "--device", "cpu", "--steps", "1,3",
                           "--batch-size", "8", "--generated", "32", "--val-size", "32", "--data-dir",
                           str(tmp_path / "none"), "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "generated CIFAR-10 (160 random images)" in proc.stdout
    assert "summary: one 10,000-step child" in proc.stdout and "extrapolated from 1- and 3-step children" in proc.stdout
    import json

    result = json.loads(out.read_text())["variants"]["paper"]
    assert result["child_s"] > result["fixed_s"] >= 0 and result["per_step_ms"] > 0
