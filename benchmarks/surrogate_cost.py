"""What one surrogate ``ask`` costs as rewards accumulate (issue 20, item 16: under 0.2 s at 10,000 rewards).

For each reward count n, a surrogate proposer of the two-unit space (sampled pool) is restored from a state holding n
rewards of n distinct random functions (rewards: a deterministic score of the fingerprint), then ``ROUNDS`` times: one
reward is told and the next ``ask(1)`` is timed (the ask right after a tell is the one that refits the model). Prints
the median and the largest time per reward count, on one thread, wall-clock and CPU (the process's own time: less
sensitive to other work on a shared machine).

    .venv/bin/python benchmarks/surrogate_cost.py [--rewards 1000 3000 10000] [--rounds 5] [--json]
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import torch

from controller import ControllerSettings, make_proposer
from controller.random_search import rng_state, sample_tokens
from controller.surrogate import features_of, usable
from search.language.index import FunctionIndex
from search.language.space import Space

ROUNDS = 5


def reward_of(fingerprint: str) -> float:
    """A deterministic reward in [0, 1) that differs between functions; a third share the penalty 0."""
    value = int(fingerprint[:8], 16) / 16 ** 8
    return 0.0 if value < 1 / 3 else value


def state_with_rewards(space: Space, n: int, seed: int = 0) -> dict:
    """A surrogate state holding ``n`` rewards of distinct functions that could have joined its pool."""
    index, rng = FunctionIndex.of(space), random.Random(seed)
    rewards, proposed = [], set()
    while len(rewards) < n:
        tokens = sample_tokens(space, rng)
        if not usable(features_of(tokens)):
            continue
        fingerprint = index.fingerprint(tokens)
        if fingerprint not in proposed:
            proposed.add(fingerprint)
            rewards.append([len(rewards), list(tokens), reward_of(fingerprint)])
    proposer = make_proposer(ControllerSettings(kind="surrogate"), space, seed)
    state = proposer.state_dict()
    state.update(next_index=n, rng=rng_state(rng), proposed=sorted(proposed), rewards=rewards)
    return state


def ask_seconds(space: Space, n: int, rounds: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU time of ``ask(1)`` right after a tell, ``rounds`` times, starting from ``n`` rewards."""
    proposer = make_proposer(ControllerSettings(kind="surrogate"), space, 0)
    proposer.load_state_dict(state_with_rewards(space, n))
    pending = proposer.ask(1)  # the first ask fills the pool; not what a long search pays per ask
    times, cpu = [], []
    for _ in range(rounds):
        for p in pending:
            proposer.tell(p, reward_of(FunctionIndex.of(space).fingerprint(p.tokens)))
        start, start_cpu = time.perf_counter(), time.process_time()
        pending = proposer.ask(1)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return times, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rewards", type=int, nargs="+", default=[1000, 3000, 10000])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    space = Space(2)
    results = {}
    for n in args.rewards:
        times, cpu = ask_seconds(space, n, args.rounds)
        results[n] = {"median_s": statistics.median(times), "max_s": max(times),
                      "median_cpu_s": statistics.median(cpu), "max_cpu_s": max(cpu)}
        if not args.json:
            print(f"{n:>7,} rewards: ask after a tell {results[n]['median_s']:.3f} s median, "
                  f"{results[n]['max_s']:.3f} s max; CPU {results[n]['median_cpu_s']:.3f} s median, "
                  f"{results[n]['max_cpu_s']:.3f} s max ({args.rounds} asks)", flush=True)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
