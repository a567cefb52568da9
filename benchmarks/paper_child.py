"""What one child of the paper's protocol costs: ResNet-20 on CIFAR-10, 10K steps at batch 128, timed exactly as a
search trains it (``evaluator.train.train_child``, the settings of ``configs/paper.yaml``).

For each variant it trains two children of the candidate ``x * sigmoid(beta * x)`` with the same settings, one of
``S1`` steps and one of ``S2`` steps (``--steps S1,S2``, after a warm-up child that loads the data and the kernels),
and splits their wall times into a cost per step and a fixed cost (set-up, compilation, the evaluation):

    per step  = (wall(S2) - wall(S1)) / (S2 - S1)          images/s = batch / per step
    fixed     = wall(S1) - S1 * per step
    one child = fixed + steps * per step                   (the paper's 10,000 steps unless --paper-steps says)

so a child of 10,000 steps is extrapolated from short ones, and says so. Variants (``--variants``):

- ``paper``: configs/paper.yaml as it stands (on CUDA: compiled, bf16, channels_last, data on the GPU);
- ``eager``: not compiled;  ``reduce-overhead``: compiled with CUDA graphs;  ``max-autotune``: autotuned kernels,
  no CUDA graphs;  ``fp32``: no bf16 autocast;  ``contiguous``: no channels_last;  ``data-on-cpu``: the dataset on
  the host, each batch made there and copied to the GPU.

On CUDA, ``--share 2,4,8`` also starts that many processes at once on the GPU, each training the ``paper`` child, and
reports children per GPU-hour (N x 3600 / one child's time while sharing). Without ``data_dir/cifar-10-batches-py``
it generates a CIFAR-10 of random images in torchvision's format (accuracy is then meaningless; speed is not).

    python benchmarks/paper_child.py                                      # CUDA when present
    python benchmarks/paper_child.py --variants all --share 2,4,8 --json paper_child.json
    python benchmarks/paper_child.py --device cpu --steps 2,4 --batch-size 16 --generated 64 --val-size 64  # CPU smoke
"""
from __future__ import annotations

import argparse
import atexit
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from evaluator.data import GENERATED_MARK, load_task, write_generated_cifar10  # noqa: E402
from evaluator.settings import ChildSettings  # noqa: E402
from evaluator.train import train_child  # noqa: E402

CANDIDATE = "x * sigmoid(beta * x)"
VARIANTS = {
    "paper": {},
    "eager": {"compile": "off"},
    "reduce-overhead": {"compile": "on", "compile_mode": "reduce-overhead"},
    "max-autotune": {"compile": "on", "compile_mode": "max-autotune-no-cudagraphs"},
    "fp32": {"precision": "fp32"},
    "contiguous": {"channels_last": "off"},
    "data-on-cpu": {"data_device": "cpu"},
}
CUDA_ONLY = ("reduce-overhead", "max-autotune", "fp32", "contiguous", "data-on-cpu")


def paper_settings(args) -> ChildSettings:
    """The ``child:`` section of configs/paper.yaml, with this run's device, data folder and sizes."""
    raw = yaml.safe_load((REPO / "configs" / "paper.yaml").read_text())["child"]
    settings = ChildSettings(**raw)
    changes = {"device": args.device, "data_dir": args.data_dir, "time_limit_s": 0.0, "threads": 0}
    if args.batch_size:
        changes["batch_size"] = args.batch_size
    if args.val_size is not None:
        changes["val_size"] = args.val_size
    return dataclasses.replace(settings, **changes)


def ensure_data(settings: ChildSettings, generated: int) -> tuple[ChildSettings, str]:
    """Real CIFAR-10 when ``data_dir`` holds it, else a generated one (``evaluator.data.write_generated_cifar10``,
    which the loader recognises by its mark, in this process and in the ``--share`` ones) in a temporary folder
    removed at exit; says which."""
    folder = os.path.join(settings.data_dir, "cifar-10-batches-py")
    if os.path.isfile(os.path.join(folder, GENERATED_MARK)):
        return settings, f"generated CIFAR-10 in {settings.data_dir}"
    if os.path.isdir(folder):
        return settings, f"CIFAR-10 from {settings.data_dir}"
    root = tempfile.mkdtemp(prefix="paper-child-data-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    write_generated_cifar10(root, per_batch=generated, n_test=min(generated, 1000))
    return dataclasses.replace(settings, data_dir=root), f"generated CIFAR-10 ({5 * generated} random images)"


def time_child(settings: ChildSettings, steps: int) -> tuple[float, dict]:
    """Wall seconds of one ``train_child`` call of ``steps`` steps (synchronised), and its record."""
    settings = dataclasses.replace(settings, steps=steps, warmup_steps=min(settings.warmup_steps, steps))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    record = train_child(settings, CANDIDATE, seed=0).to_dict()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    if record["status"] not in ("ok", "diverged"):
        raise SystemExit(f"the child failed: {record['error']}")
    return time.perf_counter() - start, record


def measure(settings: ChildSettings, s1: int, s2: int, paper_steps: int) -> dict:
    """The per-step and fixed costs of one variant, and the extrapolated child."""
    cuda = settings.device != "cpu" and torch.cuda.is_available()
    time_child(settings, s1)  # warm-up: data on the device, kernels built, allocator grown
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    short, _ = time_child(settings, s1)
    long, record = time_child(settings, s2)
    per_step = (long - short) / (s2 - s1)
    resolved = per_step > 0  # else the timing noise is larger than S2 - S1 steps: bound the step by the long child
    per_step = per_step if resolved else long / s2
    fixed = max(short - s1 * per_step, 0.0)
    return {"steps": [s1, s2], "wall_s": [short, long], "resolved": resolved, "per_step_ms": per_step * 1000,
            "images_per_s": settings.batch_size / per_step, "fixed_s": fixed,
            "child_s": fixed + paper_steps * per_step, "children_per_hour": 3600 / (fixed + paper_steps * per_step),
            "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
            "device": record["device"]}


def shared(args, n: int, settings: ChildSettings) -> dict:
    """``n`` processes training the paper child at once on one GPU: children per GPU-hour."""
    argv = [sys.executable, __file__, "--one", "--device", settings.device, "--data-dir", settings.data_dir,
            "--steps", args.steps, "--paper-steps", str(args.paper_steps)]
    if args.batch_size:
        argv += ["--batch-size", str(args.batch_size)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
             for _ in range(n)]
    outputs = [p.communicate()[0].strip().splitlines() for p in procs]
    if any(p.returncode or not out for p, out in zip(procs, outputs)):  # its own error is above, on stderr
        raise SystemExit(f"a process sharing the GPU failed (exit {[p.returncode for p in procs]})")
    results = [json.loads(out[-1]) for out in outputs]
    child_s = max(r["child_s"] for r in results)
    return {"processes": n, "child_s": child_s, "children_per_gpu_hour": n * 3600 / child_s,
            "images_per_s_total": sum(r["images_per_s"] for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data-dir", default="data", help="where cifar-10-batches-py is (else one is generated)")
    parser.add_argument("--steps", default="50,250", help="S1,S2: the two timed children's steps")
    parser.add_argument("--paper-steps", type=int, default=10_000, help="steps of the child to extrapolate to")
    parser.add_argument("--batch-size", type=int, default=0, help="0 = configs/paper.yaml's (128)")
    parser.add_argument("--val-size", type=int, default=None, help="held-out images scored (default: the config's)")
    parser.add_argument("--generated", type=int, default=10_000, help="images per training batch file when "
                                                                      "CIFAR-10 is generated")
    parser.add_argument("--variants", default="paper", help="comma-separated, or all: " + ", ".join(VARIANTS))
    parser.add_argument("--share", default="", help="on CUDA: processes sharing the GPU, e.g. 2,4,8")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: one shared child
    args = parser.parse_args()
    s1, s2 = (int(v) for v in args.steps.split(","))
    settings, source = ensure_data(paper_settings(args), args.generated)
    load_task(settings, "cpu")
    if args.one:
        print(json.dumps(measure(settings, s1, s2, args.paper_steps)))
        return

    cuda = settings.device != "cpu"
    names = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    names = [n for n in names if cuda or n not in CUDA_ONLY]
    gpu = torch.cuda.get_device_name() if cuda else "none"
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, GPU {gpu}, torch {torch.__version__}")
    print(f"child: {settings.resolved_model} on {source}, batch {settings.batch_size}, candidate {CANDIDATE}; "
          f"timed children of {s1} and {s2} steps, extrapolated to {args.paper_steps:,} steps")
    rows = {}
    print(f"\n{'variant':<16} {'ms/step':>8} {'images/s':>9} {'fixed s':>8} {'child s':>8} {'per hour':>8} "
          f"{'peak MiB':>8}")
    for name in names:
        variant = dataclasses.replace(settings, **VARIANTS[name])
        row = rows[name] = measure(variant, s1, s2, args.paper_steps)
        memory = f"{row['peak_memory_mib']:8.0f}" if row["peak_memory_mib"] is not None else f"{'-':>8}"
        mark = " " if row["resolved"] else "<"  # "<": the step was not resolved, this is an upper bound
        print(f"{name:<15}{mark} {row['per_step_ms']:8.2f} {row['images_per_s']:9.0f} {row['fixed_s']:8.2f} "
              f"{row['child_s']:8.1f} {row['children_per_hour']:8.1f} {memory}", flush=True)
    sharing = []
    if cuda and args.share:
        print(f"\n{'processes':>9} {'child s':>8} {'children per GPU-hour':>22} {'images/s (all)':>15}")
        for n in (int(v) for v in args.share.split(",")):
            result = shared(args, n, settings)
            sharing.append(result)
            print(f"{n:>9} {result['child_s']:8.1f} {result['children_per_gpu_hour']:22.0f} "
                  f"{result['images_per_s_total']:15.0f}", flush=True)
    best = min(rows.values(), key=lambda r: r["child_s"])
    per_hour = max([r["children_per_gpu_hour"] for r in sharing] + [best["children_per_hour"]])
    print(f"\nsummary: one {args.paper_steps:,}-step child {best['child_s']:.1f} s at best alone "
          f"({best['images_per_s']:.0f} images/s); {per_hour:.0f} children per {'GPU' if cuda else 'CPU'}-hour at best "
          f"(extrapolated from {s1}- and {s2}-step children)")
    if args.json:
        args.json.write_text(json.dumps({"variants": rows, "sharing": sharing, "source": source, "gpu": gpu}, indent=2))


if __name__ == "__main__":
    main()
