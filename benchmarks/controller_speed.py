"""How fast the controllers propose and learn, on one CPU core: the controller must never be what a search waits on.

Measures, in the 2-unit space with batches of 64 (targets: >= 1,000 proposals/s and a PPO update < 1 s):
- proposals per second of ``ask(64)`` for every proposer kind (the policy samples a whole batch at once);
- the time of one learner update (the ``tell`` that completes a batch of 64) for PPO and REINFORCE.

    .venv/bin/python benchmarks/controller_speed.py [--repeats 20] [--json]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from controller import ControllerSettings, make_proposer
from search.language.space import Space

BATCH = 64


def proposals_per_second(kind: str, space: Space, repeats: int) -> float:
    proposer = make_proposer(ControllerSettings(kind=kind, batch_size=BATCH), space, seed=0)
    generator = torch.Generator().manual_seed(0)
    for p in proposer.ask(BATCH):  # warm-up; fills evolution's population, so later asks make children
        proposer.tell(p, torch.rand(1, generator=generator).item())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        proposer.ask(BATCH)
        times.append(time.perf_counter() - start)
    return BATCH / statistics.median(times)


def update_seconds(kind: str, space: Space, repeats: int) -> float:
    """Median time of the tell that completes a batch (the learner's update), over ``repeats`` updates."""
    proposer = make_proposer(ControllerSettings(kind=kind, batch_size=BATCH), space, seed=0)
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(repeats + 1):
        proposals = proposer.ask(BATCH)
        rewards = torch.rand(BATCH, generator=generator).tolist()
        for p, r in zip(proposals[:-1], rewards):
            proposer.tell(p, r)
        start = time.perf_counter()
        record = proposer.tell(proposals[-1], rewards[-1])
        times.append(time.perf_counter() - start)
        assert record is not None, "the 64th tell must update"
    return statistics.median(times[1:])  # the first update pays one-off allocation


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    space = Space(core_units=2)
    results = {
        "machine": f"{cpu_name()}, 1 thread, torch {torch.__version__}",
        "proposals_per_s": {k: proposals_per_second(k, space, args.repeats)
                            for k in ("ppo", "reinforce", "random", "evolution", "exhaustive")},
        "update_s": {k: update_seconds(k, space, args.repeats) for k in ("ppo", "reinforce")},
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"controller speed, 2 core units, batch {BATCH}, {results['machine']}")
    for kind, rate in results["proposals_per_s"].items():
        print(f"  {kind:<11} {rate:>10,.0f} proposals/s   (target >= 1,000)")
    for kind, seconds in results["update_s"].items():
        print(f"  {kind:<11} {seconds * 1000:>10.1f} ms per update (target < 1,000 ms)")


if __name__ == "__main__":
    main()
