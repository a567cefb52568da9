"""Training speed of children with a native activation and with a searched candidate, side by side, as ratios.

For ResNet-20 (CIFAR-sized input, batch 128) and the proxy's 1-D CNN (mnist1d-sized input, batch 128) it times
training steps (forward, backward, SGD) with:

- ``relu`` and ``silu``: torch's native modules;
- the candidate ``x * sigmoid(beta * x)`` (Swish with trainable per-channel beta) as ``activation_module(expr)``, eager
  (``kernel="eager"``), fused (``kernel="compiled"``: one ``torch.compile``d kernel per expression) and native
  (``kernel="native"``: search.language.native's one C++ kernel, built once per machine; on CUDA
  search.language.cuda's Triton kernels, compiled once per GPU);
- on CUDA also the way ``train_child`` runs a child there: the whole child under ``torch.compile``, channels_last,
  bf16 autocast (rows marked "child compiled").

Variants are measured in interleaved rounds (each round times every variant once) and the median round is kept, so a
shared, noisy machine slows them alike. Inputs are random tensors already on the device: this measures the child, not
data loading. ``--sample N`` instead times training steps of the proxy (cnn1d) for a fixed random sample of N
one-unit and N two-unit functions that pass the screen (seed 22), eager and native, interleaved with relu in each
round, and prints each kernel's median and worst ratio to relu (a function whose loss stops being finite is left out
there, as a child stops: it is listed as diverged); with ``--children`` it times whole 500-step proxy children
(``train_child``: data, training and evaluation) instead; ``--sample-model resnet20`` times ResNet-20's steps (batch
128, CIFAR-sized random input) instead of the proxy's: the sample on a GPU, where ``native`` is the Triton kernel
(``benchmarks/gpu.sh``). The load average is printed next to the figures.
Usage::

    .venv/bin/python benchmarks/child_speed.py                 # CUDA when present, else CPU (one thread)
    .venv/bin/python benchmarks/child_speed.py --models cnn1d --rounds 7 --json speed.json
    .venv/bin/python benchmarks/child_speed.py --sample 50 --steps 20 --rounds 3
    .venv/bin/python benchmarks/child_speed.py --sample 50 --children --rounds 1
    python benchmarks/child_speed.py --sample 10 --sample-model resnet20 --rounds 3 --steps 10   # on a GPU
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluator.activations import activation_factory  # noqa: E402
from evaluator.models import build_model  # noqa: E402
from evaluator.settings import ChildSettings  # noqa: E402
from evaluator.train import compile_child, make_optimizer, steady_heap, train_step  # noqa: E402
from search.language import cuda  # noqa: E402

CANDIDATE = "x * sigmoid(beta * x)"
INPUT_SHAPE = {"resnet20": (3, 32, 32), "cnn1d": (1, 40)}


def variants(device: torch.device, whole: bool) -> list[tuple[str, str, str | None, bool]]:
    """(label, activation, activation kernel, compile the whole child)."""
    out = [("relu", "relu", None, False), ("silu (native)", "silu", None, False),
           ("candidate eager", CANDIDATE, "eager", False), ("candidate compiled", CANDIDATE, "compiled", False)]
    if device.type == "cpu" or cuda.available():  # the C++ kernel on CPU, the Triton one on CUDA
        out.append(("candidate native kernel", CANDIDATE, "native", False))
    if whole:
        out += [("relu, child compiled", "relu", None, True), ("candidate, child compiled", CANDIDATE, None, True)]
    return out


def make_runner(model_name: str, activation: str, kernel: str | None, whole: bool, device: torch.device,
                batch: int):
    """A function running one training step, after building (and warming up) the child."""
    steady_heap()  # the process's heap as a search's child has it (evaluator.train)
    torch.manual_seed(0)
    model = build_model(model_name, activation_factory(activation, kernel=kernel)).to(device)
    x = torch.randn(batch, *INPUT_SHAPE[model_name], device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    if device.type == "cuda" and x.dim() == 4:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    settings = ChildSettings(compile="on" if whole else "off")
    net = compile_child(model, settings, x[:2])
    optimizer = make_optimizer(model, settings)

    def step() -> torch.Tensor:
        return train_step(net, optimizer, x, y, lr=0.01)

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(model_name: str, device: torch.device, batch: int, steps: int, rounds: int, whole: bool) -> list[dict]:
    rows = []
    runners = []
    for label, activation, act_compile, whole_child in variants(device, whole):
        start = time.perf_counter()
        run = make_runner(model_name, activation, act_compile, whole_child, device, batch)
        for _ in range(3):  # warm-up: compilation, allocator, first-call overheads
            run()
        sync(device)
        runners.append((label, run, time.perf_counter() - start))
    times: dict[str, list[float]] = {label: [] for label, _, _ in runners}
    for _ in range(rounds):
        for label, run, _ in runners:
            sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                run()
            sync(device)
            times[label].append((time.perf_counter() - start) / steps)
    silu = statistics.median(times["silu (native)"])
    relu = statistics.median(times["relu"])
    for label, _, setup_s in runners:
        t = statistics.median(times[label])
        rows.append({"model": model_name, "variant": label, "batch": batch, "step_ms": 1e3 * t,
                     "images_per_s": batch / t, "time_vs_silu": t / silu, "time_vs_relu": t / relu,
                     "setup_s": setup_s})
    return rows


def sample_texts(n: int, seed: int = 22) -> list[str]:
    """``n`` one-unit and ``n`` two-unit functions that pass the screen, drawn uniformly from the token strings."""
    from search.language.space import Space

    rng, out = random.Random(seed), []
    for units in (1, 2):
        space, texts = Space(units), []
        while len(texts) < n:
            expr = space.decode(tuple(rng.choice(c) for c in space.choices))
            if expr.screen().ok and expr.text not in texts:
                texts.append(expr.text)
        out += texts
    return out


def step_times(text: str, device: torch.device, batch: int, steps: int, rounds: int, model: str = "cnn1d"
               ) -> tuple[dict[str, list[float]], str | None]:
    """Seconds of ``steps`` training steps of ``model`` (the proxy's by default) with ``text`` eager and native and with
    relu, ``rounds`` interleaved rounds after 3 warm-up steps each; and, where the loss stopped being finite, which
    kernel at which step (the rounds end there)."""
    runners = {kind: make_runner(model, text, kind, False, device, batch) for kind in ("eager", "native")}
    runners["relu"] = make_runner(model, "relu", None, False, device, batch)
    done = {kind: 0 for kind in runners}
    bad: str | None = None

    def steps_of(kind: str, count: int) -> None:
        nonlocal bad
        for _ in range(count):
            done[kind] += 1
            if not bool(torch.isfinite(runners[kind]())) and bad is None:
                bad = f"{kind} at step {done[kind]}"

    for kind in runners:
        steps_of(kind, 3)
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(rounds):
        for kind in runners:
            start = time.perf_counter()
            steps_of(kind, steps)
            times[kind].append(time.perf_counter() - start)
        if bad:
            break
    return times, bad


def child_times(text: str, rounds: int) -> tuple[dict[str, list[float]], str | None]:
    """Seconds of whole proxy children (``train_child``: the quickstart's mnist1d child, 500 steps, data and evaluation
    included, one thread) of ``text`` eager and native and of relu, interleaved, seed 1; and, where a child of
    ``text`` did not end ok (it diverged: a search's child stops there), which and after how many steps."""
    from evaluator.train import train_child

    times: dict[str, list[float]] = {"eager": [], "native": [], "relu": []}
    for _ in range(rounds):
        for kind in times:
            result = train_child(ChildSettings(task="mnist1d", device="cpu", threads=1, compile="off",
                                               kernel=kind if kind != "relu" else "auto"),
                                 "relu" if kind == "relu" else text, seed=1)
            if result.status != "ok":
                return times, f"{kind} {result.status} after {result.steps} steps"
            times[kind].append(result.wall_s)
    return times, None


def sample(n: int, device: torch.device, batch: int, steps: int, rounds: int, children: bool = False,
           model: str = "cnn1d") -> int:
    """Step time of ``model`` (the proxy's by default) for a sample of functions, eager and native, relative to relu
    timed in the same round (``children``: the time of whole proxy children instead, ``child_times``).

    A function whose training loss stops being finite (in either kernel) is not timed further: a child stops at its
    first non-finite loss (``evaluator.train``), so the steps after it, on NaN and inf, are never run by a search. It is
    listed as diverged, with the step, and left out of the ratios."""
    ratios: dict[str, list[float]] = {"eager": [], "native": []}
    parts: dict[str, list[float]] = {"one-unit": [], "two-unit": []}
    loads, diverged = [], []
    texts = sample_texts(n)
    for index, text in enumerate(texts):
        if children:
            times, bad = child_times(text, rounds)
        else:
            times, bad = step_times(text, device, batch, steps, rounds, model)
        label = "one-unit" if index < n else "two-unit"
        if bad:
            diverged.append((label, text, bad))
            print(f"{text:60s}  diverged ({bad}: a child stops there), not counted", flush=True)
            continue
        relu = statistics.median(times["relu"])
        line = [f"{text:60s}"]
        for kind in ("eager", "native"):
            ratios[kind].append(statistics.median(times[kind]) / relu)
            line.append(f"{kind} {ratios[kind][-1]:.2f}x")
        parts[label].append(len(ratios["eager"]) - 1)
        loads.append(os.getloadavg()[0])
        print("  ".join(line) + f"  load {loads[-1]:.2f}", flush=True)
    for kind, values in ratios.items():
        for label, part in (("one-unit", [values[i] for i in parts["one-unit"]]),
                            ("two-unit", [values[i] for i in parts["two-unit"]]), ("all", values)):
            if not part:  # every function of the group diverged
                print(f"{kind:7s} {label:9s} no function timed")
                continue
            print(f"{kind:7s} {label:9s} median {statistics.median(part):.2f}x relu, worst {max(part):.2f}x "
                  f"({len(part)} functions)")
    faster = sum(nat < eag for nat, eag in zip(ratios["native"], ratios["eager"]))
    print(f"native faster than eager for {faster} of {len(ratios['native'])}")
    print(f"diverged, not counted: {sum(d[0] == 'one-unit' for d in diverged)} one-unit, "
          f"{sum(d[0] == 'two-unit' for d in diverged)} two-unit")
    if loads:
        print(f"load average during the run: {min(loads):.2f} to {max(loads):.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--models", nargs="+", default=["resnet20", "cnn1d"], choices=sorted(INPUT_SHAPE))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is kept")
    parser.add_argument("--steps", type=int, default=0, help="steps per round (0: 3 for ResNet-20 on CPU, else 20)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (one, like a search worker)")
    parser.add_argument("--whole-child", action="store_true", help="also time the whole child compiled (CUDA: always)")
    parser.add_argument("--sample", type=int, default=0,
                        help="time the proxy for N random one-unit and N two-unit functions, eager and native vs relu")
    parser.add_argument("--children", action="store_true",
                        help="with --sample: time whole 500-step proxy children (data, training, evaluation) "
                             "instead of training steps")
    parser.add_argument("--sample-model", default="cnn1d", choices=sorted(INPUT_SHAPE),
                        help="with --sample (not --children): the child whose steps are timed")
    parser.add_argument("--json", metavar="FILE", help="also write the rows and the machine to this JSON file")
    args = parser.parse_args()

    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda") if use_cuda else torch.device("cpu")
    torch.set_num_threads(args.threads)
    if use_cuda:
        torch.backends.cudnn.benchmark = True
    machine = torch.cuda.get_device_name(device) if use_cuda else f"{platform.processor() or platform.machine()}, " \
                                                                  f"{args.threads} thread(s)"
    print(f"device: {device} ({machine}); torch {torch.__version__}; batch {args.batch_size}; "
          f"median of {args.rounds} interleaved rounds; load average {os.getloadavg()[0]:.2f}")
    if args.sample:
        return sample(args.sample, device, args.batch_size, args.steps or 20, args.rounds, args.children,
                      args.sample_model)
    rows = []
    for model_name in args.models:
        steps = args.steps or (3 if model_name == "resnet20" and not use_cuda else 20)
        rows += measure(model_name, device, args.batch_size, steps, args.rounds, args.whole_child or use_cuda)
    print("\n| child | activation | ms/step | images/s | time vs native SiLU | time vs ReLU | setup s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['variant']} | {r['step_ms']:.1f} | {r['images_per_s']:,.0f} | "
              f"{r['time_vs_silu']:.2f}x | {r['time_vs_relu']:.2f}x | {r['setup_s']:.1f} |")
    resnet = [r for r in rows if r["model"] == "resnet20"]
    if resnet and args.batch_size == 128:
        print("\nProjected 10K-step ResNet-20 child (batch 128), training steps only:")
        for r in resnet:
            print(f"  {r['variant']:<28} {10_000 * r['step_ms'] / 1e3 / 60:.1f} min")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": str(device), "machine": machine,
                                               "torch": torch.__version__, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
