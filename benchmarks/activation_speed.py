"""Forward+backward time of compiled candidates against native / hand-written equivalents, side by side.

    .venv/bin/python benchmarks/activation_speed.py [--shape 128 64 32 32] [--repeats 10] [--device cpu]

For each function it times, interleaved in one run: the native or hand-written PyTorch equivalent, the candidate run
as eager generated ops, and the candidate fused with torch.compile (after its first, timed, compile). It prints
milliseconds per forward+backward and the ratios to the reference, plus the compile time of each candidate.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from search import Expression
from search.language.kernel import activation_module

CASES = [
    # (candidate text, reference name, reference function taking (x, beta) with beta of shape (1, C, 1, 1))
    ("x * sigmoid(beta * x)", "F.silu (beta fixed at 1)", lambda x, b: F.silu(x)),
    ("max(x, sigmoid(x))", "torch.maximum(x, x.sigmoid())", lambda x, b: torch.maximum(x, torch.sigmoid(x))),
    ("cos(x) - x", "torch.cos(x) - x", lambda x, b: torch.cos(x) - x),
    ("x * sigmoid(beta * x) - sin(x * sigmoid(beta * x))", "hand-written eager",
     lambda x, b: (lambda s: s - torch.sin(s))(x * torch.sigmoid(b * x))),
]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_time(fn, x: torch.Tensor, params: list[torch.Tensor], device: torch.device) -> float:
    """Seconds for one forward+backward."""
    grad = torch.ones_like(x)
    sync(device)
    start = time.perf_counter()
    y = fn(x)
    torch.autograd.backward(y, grad)
    sync(device)
    for p in [x] + params:
        p.grad = None
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[128, 64, 32, 32])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warm-cache", action="store_true",
                        help="let inductor reuse its on-disk cache (default: cold, the cost a new candidate pays)")
    args = parser.parse_args()
    if not args.warm_cache:
        import torch._inductor.config as inductor_config

        inductor_config.force_disable_caches = True
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.randn(*args.shape, device=device, requires_grad=True)
    channels = args.shape[1]
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; tensor {tuple(args.shape)} float32; median of {args.repeats} interleaved repeats")
    print(f"{'candidate':52s} {'reference':32s} {'ref ms':>8s} {'eager ms':>9s} {'fused ms':>9s} "
          f"{'eager/ref':>9s} {'fused/ref':>9s} {'compile s':>9s}")
    for text, ref_name, ref in CASES:
        expr = Expression.parse(text)
        eager = activation_module(expr, channels=channels, compile=False).to(device)
        fused = activation_module(expr, channels=channels, compile=True).to(device)
        beta = torch.ones(1, channels, 1, 1, device=device, requires_grad=True)
        start = time.perf_counter()
        step_time(fused, x, list(fused.parameters()), device)  # first call compiles forward and backward
        compile_s = time.perf_counter() - start
        runs = {"ref": [], "eager": [], "fused": []}
        contenders = {"ref": (lambda t: ref(t, beta), [beta]), "eager": (eager, list(eager.parameters())),
                      "fused": (fused, list(fused.parameters()))}
        for fn, params in contenders.values():  # warm-up
            step_time(fn, x, params, device)
        for _ in range(args.repeats):
            for key, (fn, params) in contenders.items():
                runs[key].append(step_time(fn, x, params, device))
        ms = {k: statistics.median(v) * 1e3 for k, v in runs.items()}
        print(f"{text:52s} {ref_name:32s} {ms['ref']:8.1f} {ms['eager']:9.1f} {ms['fused']:9.1f} "
              f"{ms['eager'] / ms['ref']:9.2f} {ms['fused'] / ms['ref']:9.2f} {compile_s:9.1f}")


if __name__ == "__main__":
    main()
