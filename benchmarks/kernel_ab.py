"""Training steps with two builds of the native kernel in one process, interleaved: this checkout's against another's.

    .venv/bin/python benchmarks/kernel_ab.py /path/to/other/checkout [--n 8] [--rounds 5] [--steps 20]
    .venv/bin/python benchmarks/kernel_ab.py /path/to/other/checkout --texts "gauss_diff(x, min0(x))" "tanh(x)"
    .venv/bin/python benchmarks/kernel_ab.py /path/to/other/checkout --n 50 --kernel-alone

The other checkout (e.g. ``git worktree add /tmp/base <commit>``) gives its ``search/language/native.py``'s kernel
source and flags; both kernels are built (or loaded from torch's extension cache) under names of their own and
loaded side by side, and each function's proxy child (cnn1d, batch 128, one thread) is built once per kernel. Rounds
alternate the two, each running ``--steps`` training steps with its own kernel (``search.language.native``'s loaded
module is swapped between them), so the machine's drift between separate runs (a few % on a shared VM) cancels. It
prints, for the first ``--n`` one-unit and ``--n`` two-unit functions of ``child_speed.py``'s sample that do not
diverge, this checkout's step time over the other's, and the median of each half (or, with ``--texts``, of those
functions). With ``--kernel-alone`` the rounds time each kernel alone instead of training steps: a forward saving and
a backward at each of the proxy's four activation shapes (``step_parts.py``'s ``kernel`` column), the same functions.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from child_speed import make_runner, sample_texts  # noqa: E402
from step_parts import kernel_alone  # noqa: E402
from search.language import native  # noqa: E402


def build(root: Path, tag: str):
    """The kernel of the checkout at ``root``, loaded under a name of its own."""
    from torch.utils.cpp_extension import load_inline

    spec = importlib.util.spec_from_file_location(f"native_{tag}", root / "search" / "language" / "native.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    src, flags = module.source(), module.cflags()
    ldflags = ["-lmvec"] + (["-fopenmp"] if "-fopenmp" in flags else [])
    name = f"ab_{tag}_" + hashlib.sha256((src + " ".join(flags)).encode()).hexdigest()[:12]
    return load_inline(name, cpp_sources=[src], functions=module.FUNCTIONS, extra_cflags=flags,
                       extra_ldflags=ldflags)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path, help="the other checkout's root")
    parser.add_argument("--n", type=int, default=8, help="one-unit and two-unit functions of the sample, each")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--texts", nargs="+", help="these functions instead of the sample's")
    parser.add_argument("--kernel-alone", action="store_true",
                        help="time the kernels alone at the proxy's activation shapes instead of training steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    kernels = {"other": build(args.other.resolve(), "other"), "this": build(HERE.parent, "this")}
    texts = sample_texts(50)
    what = "the kernel alone at the proxy's four sites" if args.kernel_alone else "step time"
    print(f"this checkout over {args.other}: {what}, median of {args.rounds} alternating rounds of {args.steps} "
          f"{'calls' if args.kernel_alone else 'steps'}; load average {os.getloadavg()[0]:.2f}")
    groups = [("given", args.texts)] if args.texts else [("one-unit", texts[:50]), ("two-unit", texts[50:])]
    ratios: dict[str, list[float]] = {label: [] for label, _ in groups}
    for label, part in groups:
        for text in part:
            if not args.texts and len(ratios[label]) == args.n:
                break
            runners = {}
            for kind, kernel in kernels.items():
                native._STATE["module"] = kernel
                runners[kind] = make_runner("cnn1d", text, "native", False, torch.device("cpu"), 128)
            finite = True
            for kind, run in runners.items():
                native._STATE["module"] = kernels[kind]
                for _ in range(3):
                    finite = finite and bool(torch.isfinite(run()))
            if not finite:
                continue  # a diverging child stops: not timed (child_speed.py's rule)
            if args.kernel_alone:
                for kind, kernel in kernels.items():
                    native._STATE["module"] = kernel
                    runners[kind] = kernel_alone(text)  # it holds the kernel it was made with
            times: dict[str, list[float]] = {kind: [] for kind in runners}
            for _ in range(args.rounds):
                for kind, run in runners.items():
                    native._STATE["module"] = kernels[kind]
                    start = time.perf_counter()
                    for _ in range(args.steps):
                        run()
                    times[kind].append(time.perf_counter() - start)
            ratios[label].append(statistics.median(times["this"]) / statistics.median(times["other"]))
            print(f"{text:66s} {ratios[label][-1]:.3f}", flush=True)
    for label, values in ratios.items():
        print(f"{label}: median {statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f}, "
              f"{len(values)} functions)")
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
