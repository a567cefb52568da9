"""Forward+backward time of compiled candidates against native / hand-written equivalents, side by side.

    .venv/bin/python benchmarks/activation_speed.py [--shape 128 64 32 32] [--repeats 10] [--device cpu] [--no-compile]
    .venv/bin/python benchmarks/activation_speed.py --per-operator --shape 128 32 40 --scales 1 30 10000
    .venv/bin/python benchmarks/activation_speed.py --saved-values --shape 128 32 40
    .venv/bin/python benchmarks/activation_speed.py --threads 1 2 --shape 128 16 32 32

For each function it times, interleaved in one run: the native or hand-written PyTorch equivalent, F.relu and
F.silu, the candidate run as eager generated ops, fused with torch.compile (after its first, timed, compile; skipped
with --no-compile) and run by the native kernel (search.language.native; CPU). It prints milliseconds per
forward+backward, the ratios to the reference, to F.relu and to F.silu, the compile time of each candidate, and the
load average. Memory traffic per element (float32): the minimum is 16 bytes (forward: read x, write y; backward: read
x and dy, write dx); the native kernel's column ``native B/elt`` counts what it moves: that, plus 8 for each costly
value its forward saves and its backward reads (``native_bytes``), plus 4 where its backward reads y back (every other
value stays in cache, per tile); eager ops move 8 bytes per operator forward and about 12 per operator backward, plus
their saved tensors.

``--per-operator`` times each operator alone (``op(x)``, a binary one as ``op(x, x)``) forward+backward, eager and
native, on inputs drawn as randn times each of ``--scales``: a child whose pre-activations grow feeds the kernel
large values, where a vector math library may leave its fast path. With ``--forward-only`` it times the forward alone
(the vector math itself: eager's backward of exp or tanh reuses the saved output, native's recomputes it).

``--saved-values`` times the native kernel alone, forward+backward, as training runs it (the forward saves the values
of its costly nodes that the backward reads: ``native.FUNCTIONS``' ``forward_saving`` / ``backward_saved``) against
computing every needed value again in the backward, interleaved, and checks that both give the same bits.

``--threads N ...`` times each function's forward+backward, native and as F.silu, on each of N threads
(``torch.set_num_threads``, what ``child.threads`` sets), interleaved, and prints each one's speed-up over the first
count: the kernel's tiles run on torch's threads as torch's own operators do.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search import Expression  # noqa: E402
from search.language.kernel import activation_module  # noqa: E402

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


def native_bytes(expr: Expression, x: torch.Tensor) -> int:
    """Bytes per element the native kernel reads and writes in a training step's forward and backward (float32): x and
    y, then x, dy and dx (16); 8 for each value the forward saves and the backward reads; 4 where the backward reads y
    back (the plan the kernel runs: ``forward_saving``'s outputs)."""
    from search.language import native

    channels, inner = native._dims(x)
    beta = torch.ones(max(1, expr.n_betas), channels)
    _, saved, y = native.extension().forward_saving(x.detach().cpu(), beta, native.program(expr.root), channels, inner,
                                                    True)
    return 16 + 8 * (0 if saved is None else saved.shape[0]) + 4 * (y is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[128, 64, 32, 32])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile (minutes on a slow CPU)")
    parser.add_argument("--warm-cache", action="store_true",
                        help="let inductor reuse its on-disk cache (default: cold, the cost a new candidate pays)")
    parser.add_argument("--per-operator", action="store_true", help="time every operator alone, eager and native")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 30.0, 10000.0],
                        help="with --per-operator: input = randn * scale, for each scale")
    parser.add_argument("--saved-values", action="store_true",
                        help="time the native kernel's forward+backward with the values of its costly nodes saved "
                             "by the forward against computing them again in the backward (CPU, one thread)")
    parser.add_argument("--threads", type=int, nargs="+", metavar="N",
                        help="time the native kernel and F.silu on each of these thread counts")
    parser.add_argument("--forward-only", action="store_true",
                        help="with --per-operator: time the forward alone (no autograd), which compares the vector "
                             "math itself: eager's backward reuses saved outputs where native's recomputes them")
    args = parser.parse_args()
    if args.saved_values:
        saved_values(args.shape, args.repeats)
        return
    if args.threads:
        thread_counts(args.shape, args.threads, args.repeats)
        return
    if args.per_operator:
        per_operator(args.shape, args.scales, args.repeats, args.forward_only)
        return
    if not args.warm_cache:
        import torch._inductor.config as inductor_config

        inductor_config.force_disable_caches = True
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.randn(*args.shape, device=device, requires_grad=True)
    channels = args.shape[1]
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; tensor {tuple(args.shape)} float32; median of {args.repeats} interleaved repeats; "
          f"load average {os.getloadavg()[0]:.2f}")
    kinds = ["eager"] + ([] if args.no_compile else ["compiled"]) + (["native"] if device.type == "cpu" else [])
    print(f"{'candidate':52s} {'ref ms':>7s} {'relu ms':>7s} {'silu ms':>7s} " +
          " ".join(f"{k + ' ms':>11s} {k + '/ref':>11s} {k + '/relu':>11s} {k + '/silu':>11s}" for k in kinds) +
          f" {'compile s':>9s}" + (f" {'native B/elt':>12s}" if "native" in kinds else ""))
    for text, ref_name, ref in CASES:
        expr = Expression.parse(text)
        modules = {k: activation_module(expr, channels=channels, kernel=k).to(device) for k in kinds}
        beta = torch.ones(1, channels, *([1] * (len(args.shape) - 2)), device=device, requires_grad=True)
        compile_s = float("nan")
        if "compiled" in modules:
            start = time.perf_counter()
            step_time(modules["compiled"], x, list(modules["compiled"].parameters()), device)  # compiles fwd and bwd
            compile_s = time.perf_counter() - start
        contenders = {"ref": (lambda t: ref(t, beta), [beta]), "relu": (F.relu, []), "silu": (F.silu, []),
                      **{k: (m, list(m.parameters())) for k, m in modules.items()}}
        runs = {k: [] for k in contenders}
        for fn, params in contenders.values():  # warm-up
            step_time(fn, x, params, device)
        for _ in range(args.repeats):
            for key, (fn, params) in contenders.items():
                runs[key].append(step_time(fn, x, params, device))
        ms = {k: statistics.median(v) * 1e3 for k, v in runs.items()}
        print(f"{text:52s} {ms['ref']:7.2f} {ms['relu']:7.2f} {ms['silu']:7.2f} " +
              " ".join(f"{ms[k]:11.2f} {ms[k] / ms['ref']:11.2f} {ms[k] / ms['relu']:11.2f} {ms[k] / ms['silu']:11.2f}"
                       for k in kinds) + f" {compile_s:9.1f}" +
              (f" {native_bytes(expr, x):12d}" if "native" in kinds else "") +
              f"   (ref: {ref_name}; load {os.getloadavg()[0]:.2f})")


SAVED_CASES = ["x * sigmoid(beta * x)", "sin(x) * relu(x)", "tanh(x) * beta", "exp(x)", "sigmoid(x) * gauss(x)",
               "min(erf(x), sigmoid(x))", "gauss_diff(softplus(x), erf(x))", "mix(relu(x), asinh(x))",
               "max(min0(x), sin(x))", "relu(x)"]


def saved_values(shape: list[int], repeats: int) -> None:
    """The native kernel's raw forward+backward (us) with the costly node values saved by the forward
    (``forward_saving`` / ``backward_saved``, what training runs) against recomputing every needed value in the
    backward (``forward`` / ``backward``), interleaved, and whether both give the same bits."""
    from search.language import native

    torch.set_num_threads(1)
    ext = native.extension()
    channels, inner = shape[1], math.prod(shape[2:]) if len(shape) > 2 else 1
    gen = torch.Generator().manual_seed(0)
    x, dy = torch.randn(*shape, generator=gen), torch.randn(*shape, generator=gen)
    print(f"CPU, 1 thread; tensor {tuple(shape)} float32; median of {repeats} interleaved rounds of 20 calls; us per "
          f"forward+backward; load average {os.getloadavg()[0]:.2f}")
    totals = [0.0, 0.0]
    for text in SAVED_CASES:
        expr = Expression.parse(text)
        code, beta, grad = native.program(expr.root), torch.ones(max(1, expr.n_betas), channels), expr.n_betas > 0

        def again():
            ext.forward(x, beta, code, channels, inner)
            return ext.backward(x, beta, code, dy, channels, inner, grad)

        def saving():
            _, kept, y = ext.forward_saving(x, beta, code, channels, inner, True)
            return ext.backward_saved(x, beta, code, dy, channels, inner, grad, kept, y)  # None: nothing read back

        a, b = again(), saving()
        same = all(torch.equal(u, v) for u, v in zip(a[:1 + grad], b[:1 + grad]))
        rows = ext.forward_saving(x, beta, code, channels, inner, True)[1]
        runs = [[], []]
        for _ in range(repeats):
            for i, fn in enumerate((again, saving)):
                start = time.perf_counter()
                for _ in range(20):
                    fn()
                runs[i].append((time.perf_counter() - start) / 20 * 1e6)
        t = [statistics.median(r) for r in runs]
        totals = [totals[0] + t[0], totals[1] + t[1]]
        print(f"{text:34s} again {t[0]:8.1f}  saved {t[1]:8.1f}  ratio {t[1] / t[0]:5.2f}  saved tensors "
              f"{0 if rows is None else rows.shape[0]}  same bits {same}", flush=True)
    print(f"all: again {totals[0]:.0f} us, saved {totals[1]:.0f} us, ratio {totals[1] / totals[0]:.2f}; load average "
          f"{os.getloadavg()[0]:.2f}")


def thread_counts(shape: list[int], counts: list[int], repeats: int) -> None:
    """Forward+backward ms of native candidates and of F.silu on each thread count, interleaved, and the speed-up of
    each over the first count."""
    device = torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=gen).requires_grad_()
    print(f"CPU ({os.cpu_count()} logical CPUs); tensor {tuple(shape)} float32; median of {repeats} interleaved "
          f"repeats; ms per forward+backward on {', '.join(map(str, counts))} threads; load average "
          f"{os.getloadavg()[0]:.2f}")
    contenders = {"F.silu": (F.silu, [])}
    for text in [c[0] for c in CASES] + ["min(softplus(sigmoid(x) + sinc(x)), tanh(sigmoid(x) + sinc(x)))"]:
        module = activation_module(Expression.parse(text), channels=shape[1], kernel="native")
        contenders[text] = (module, list(module.parameters()))
    runs = {(name, n): [] for name in contenders for n in counts}
    for _ in range(repeats + 1):  # the first round warms up
        for n in counts:
            torch.set_num_threads(n)
            for name, (fn, params) in contenders.items():
                runs[(name, n)].append(step_time(fn, x, params, device))
    for name in contenders:
        ms = [statistics.median(runs[(name, n)][1:]) * 1e3 for n in counts]
        print(f"{name:64s} " + " ".join(f"{n} thr {t:8.2f}" for n, t in zip(counts, ms)) + "   speed-up " +
              " ".join(f"{ms[0] / t:5.2f}x" for t in ms[1:]))
    print(f"load average {os.getloadavg()[0]:.2f}")


def forward_time(fn, x: torch.Tensor, params: list[torch.Tensor], device: torch.device) -> float:
    """Seconds for one forward without autograd."""
    with torch.no_grad():
        sync(device)
        start = time.perf_counter()
        fn(x)
        sync(device)
    return time.perf_counter() - start


def per_operator(shape: list[int], scales: list[float], repeats: int, forward_only: bool = False) -> None:
    """Forward+backward (or, with ``forward_only``, forward) ms of every operator alone, eager and native, at each
    input scale (one thread)."""
    from search.language.expression import X, apply
    from search.language.ops import BINARY, UNARY

    torch.set_num_threads(1)
    device = torch.device("cpu")
    print(f"CPU, 1 thread; tensor {tuple(shape)} float32 = randn * scale; median of {repeats} interleaved repeats; "
          f"ms per {'forward' if forward_only else 'forward+backward'}; load average {os.getloadavg()[0]:.2f}")
    print(f"{'operator':14s} " + " ".join(f"{f'eager x{s:g}':>12s} {f'native x{s:g}':>12s}" for s in scales))
    gen = torch.Generator().manual_seed(0)
    inputs = {s: (torch.randn(*shape, generator=gen) * s).requires_grad_() for s in scales}
    for op in UNARY + BINARY:
        if op.name == "x":
            continue
        expr = Expression(apply(op, *[X] * op.arity))
        modules = {k: activation_module(expr, channels=shape[1], kernel=k) for k in ("eager", "native")}
        cells = []
        for s, x in inputs.items():
            runs = {k: [] for k in modules}
            timed = forward_time if forward_only else step_time
            for m in modules.values():
                timed(m, x, list(m.parameters()), device)
            for _ in range(repeats):
                for k, m in modules.items():
                    runs[k].append(timed(m, x, list(m.parameters()), device))
            cells += [f"{statistics.median(runs[k]) * 1e3:12.3f}" for k in modules]
        print(f"{op.name:14s} " + " ".join(cells), flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
