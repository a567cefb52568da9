"""Where a native candidate's training step spends the time it takes over relu's, measured side by side.

    .venv/bin/python benchmarks/step_parts.py                       # the floor rows and six sample functions
    .venv/bin/python benchmarks/step_parts.py "tanh(x) * beta" "gauss_diff(sinh(x), cos(x))" --rounds 40
    .venv/bin/python benchmarks/step_parts.py --sample 50 --rounds 15   # child_speed.py's sample, medians per part

Training steps of the proxy child (cnn1d, batch 128, one thread, as ``child_speed.py`` builds it) in interleaved
rounds of ``--steps`` steps, median of ``--rounds``; every ratio is to torch's relu in the same rounds. First the rows
that bound what any native candidate can reach here, whatever its arithmetic:

- ``relu, saving x``: torch's relu in an autograd function that saves its input instead of its output (as the kernel
  must: a candidate's derivative is not a function of its value). It keeps one more tensor per site alive from the
  forward to the backward, and the steps' other operations run slower for it;
- ``relu(x) native`` and ``relu(x) eager``: the expression ``relu(x)`` through the native kernel and through eager
  torch operations (an activation module, per-call Python and autograd overhead included).

Then each function (``relu(x)`` first): its step ratio; ``kernel``, the kernel alone on the proxy's four activation
shapes (forward saving, backward), its time over torch's relu's there as a share of relu's step; ``calls``, what the
same four calls cost beyond the kernel through the activation module and autograd (as a child calls them: Python,
the C++ autograd node), over what torch's relu module costs beyond its kernel, as a share of relu's step; ``rest``,
what the step takes beyond those (the values the kernel keeps for its backward slowing the step's other operations).
With ``--sample N``, the functions are ``child_speed.py --sample N``'s (the issue's sample: N one-unit and N two-unit
functions), and the medians of each column per group follow; a function whose training loss stops being finite in
these steps is listed and left out, as child_speed leaves it out.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import evaluator.activations as activations  # noqa: E402
from child_speed import make_runner, sample_texts  # noqa: E402
from search.language import native  # noqa: E402
from search.language.expression import Expression  # noqa: E402
from search.language.kernel import activation_module  # noqa: E402

SHAPES = [(128, 32, 40), (128, 32, 20), (128, 32, 10), (128, 64)]  # the proxy's four activation sites, batch 128
DEFAULT = ["sin(x) * beta", "tanh(x) * beta", "sigmoid(x) * gauss(x)", "mix(sinc(x), cos(x))",
           "gauss_diff(sinh(x), cos(x))", "sqrt(x) - (sinc(x) - erf(x) + beta)"]


class _ReluSavingX(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.relu(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(g, x, 0)


class ReluSavingX(nn.Module):
    def forward(self, x):
        return _ReluSavingX.apply(x)


def sites(text: str):
    """A forward and backward through autograd at each site's shape, as a child runs them: the activation module of
    ``text`` with the native kernel (torch's relu module for relu)."""
    torch.manual_seed(0)
    calls = []
    for shape in SHAPES:
        module = nn.ReLU() if text == "relu" else activation_module(Expression.parse(text), shape[1], kernel="native")
        calls.append((module, (torch.randn(shape) * 0.7).requires_grad_(), torch.randn(shape) * 1e-3))

    def run():
        for module, x, dy in calls:
            module(x).backward(dy)
    return run


def kernel_alone(text: str):
    """One forward (saving) and backward of the kernel at each site's shape; torch's relu and its backward for relu."""
    torch.manual_seed(0)
    if text == "relu":
        xs = [torch.randn(s) for s in SHAPES]

        def run_relu():
            for x in xs:
                torch.ops.aten.threshold_backward(x, torch.relu(x), 0)
        return run_relu
    expr = Expression.parse(text)
    ext, code, n_betas = native.extension(), native.program(expr.root), max(1, expr.n_betas)
    calls = []
    for shape in SHAPES:
        x = torch.randn(shape) * 0.7
        channels, inner = native._dims(x)
        calls.append((x, torch.ones(n_betas, channels), channels, inner, torch.randn(shape) * 1e-3))

    def run():
        for x, beta, channels, inner, dy in calls:
            _, saved, y = ext.forward_saving(x, beta, code, channels, inner, True)
            ext.backward_saved(x, beta, code, dy, channels, inner, True, saved, y)
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("texts", nargs="*", default=DEFAULT, help="candidate expressions (default: six samples)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--sample", type=int, default=0, metavar="N",
                        help="the functions of child_speed.py --sample N instead (N one-unit, N two-unit)")
    args = parser.parse_args()
    if args.sample:
        args.texts = sample_texts(args.sample)
    torch.set_num_threads(1)
    if not native.available():
        print("the native kernel cannot be built here")
        return 1
    activations.BASELINES["relu_saving_x"] = lambda c, compile, kernel=None: ReluSavingX()
    rows = [("relu", "relu", None), ("relu, saving x", "relu_saving_x", None),
            ("relu(x) native", "relu(x)", "native"), ("relu(x) eager", "relu(x)", "eager")]
    floor = len(rows)
    rows += [(text, text, "native") for text in args.texts]
    steps = [make_runner("cnn1d", act, kernel, False, torch.device("cpu"), 128) for _, act, kernel in rows]
    texts = ["relu", "relu(x)"] + args.texts
    kernels = {text: kernel_alone(text) for text in texts}
    called = {text: sites(text) for text in texts}
    for fn in steps + list(kernels.values()) + list(called.values()):
        for _ in range(3):
            fn()

    finite = [True for _ in rows]  # per row: its loss stayed finite (else it is left out, as a child stops)

    def seconds(fn, row: int | None = None) -> float:
        start = time.perf_counter()
        for _ in range(args.steps):
            out = fn()
        if row is not None and not bool(torch.isfinite(out)):
            finite[row] = False
        return (time.perf_counter() - start) / args.steps

    step_t: list[list[float]] = [[] for _ in rows]
    kernel_t: dict[str, list[float]] = {text: [] for text in texts}
    called_t: dict[str, list[float]] = {text: [] for text in texts}
    for _ in range(args.rounds):
        for i, fn in enumerate(steps):
            step_t[i].append(seconds(fn, i))
        for text in texts:
            kernel_t[text].append(seconds(kernels[text]))
            called_t[text].append(seconds(called[text]))
    step = [statistics.median(t) for t in step_t]
    kernel = {text: statistics.median(t) for text, t in kernel_t.items()}
    overhead = {text: statistics.median(t) - kernel[text] for text, t in called_t.items()}
    relu = step[0]
    print(f"cnn1d, batch 128, one thread; median of {args.rounds} interleaved rounds of {args.steps} steps; "
          f"torch {torch.__version__}; load average {os.getloadavg()[0]:.2f}")
    print(f"relu: {1e3 * relu:.2f} ms a step, its kernel alone {1e3 * kernel['relu']:.3f} ms")
    for i, (label, _, _) in enumerate(rows[:floor]):
        print(f"{label:52s} {step[i] / relu:.3f}x relu")
    print(f"{'function':52s} {'step':>7s} {'kernel':>7s} {'calls':>7s} {'rest':>7s}")
    parts: dict[str, list[tuple[float, float, float, float]]] = {"one-unit": [], "two-unit": []}
    for i, (label, text, _) in [(2, rows[2])] + list(enumerate(rows[floor:], start=floor)):
        if not finite[i]:
            print(f"{text:52s} diverged (its loss stopped being finite), not counted")
            continue
        k = (kernel[text] - kernel["relu"]) / relu
        c = (overhead[text] - overhead["relu"]) / relu
        ratio = step[i] / relu
        print(f"{text:52s} {ratio:6.3f}x {k:+7.3f} {c:+7.3f} {ratio - 1 - k - c:+7.3f}")
        if args.sample and i >= floor:
            parts["one-unit" if i - floor < args.sample else "two-unit"].append((ratio, k, c, ratio - 1 - k - c))
    for group, values in parts.items():
        if values:
            medians = [statistics.median(v[j] for v in values) for j in range(4)]
            print(f"{group + ' median (' + str(len(values)) + ' functions)':52s} {medians[0]:6.3f}x "
                  + " ".join(f"{m:+7.3f}" for m in medians[1:]))
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
