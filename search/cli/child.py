"""``actsearch train`` and ``actsearch calibrate``: train one child, or check that the child ranks activations sensibly.

Child settings come from the defaults (the offline proxy), or the ``child:`` section of a search config
(``--config FILE``, ``--set child.key=value``), then from the flags given here, which win.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys

from evaluator.settings import IMAGE_MODELS, TASKS, ChildSettings
from search.cli.common import whole
from search.language.errors import UserError
from search.language.numbers import mean_sd

# Command-line flags that set a ChildSettings field: (flag, field, type, help).
_CHILD_FLAGS = (
    ("--task", "task", str, " | ".join(TASKS)),
    ("--model", "model", str, " | ".join(("auto", "cnn1d") + IMAGE_MODELS)),
    ("--steps", "steps", int, "SGD steps"),
    ("--batch-size", "batch_size", int, "training batch size"),
    ("--lr", "lr", float, "peak learning rate"),
    ("--train-size", "train_size", int, "training examples (0 = the task's standard)"),
    ("--val-size", "val_size", int, "validation examples held out"),
    ("--data-dir", "data_dir", str, "dataset directory"),
    ("--device", "device", str, "auto | cpu | cuda"),
    ("--compile", "compile", str, "auto | on | off"),
    ("--kernel", "kernel", str, "auto | eager | compiled | native: how a candidate activation runs (docs/evaluator.md)"),
    ("--split", "split", str, "val | test: the set the accuracy is measured on"),
    ("--time-limit", "time_limit_s", float, "wall-clock limit per child in seconds (0 = none)"),
    ("--threads", "threads", int, "CPU threads per child (0 = torch's default)"),
)


def _add_child_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="take the child settings from this search config's child: section")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config setting, e.g. child.weight_decay=1e-4 (repeatable)")
    for flag, name, kind, text in _CHILD_FLAGS:
        p.add_argument(flag, dest=name, type=kind, default=None, help=text)
    p.add_argument("--download", action="store_true", default=None, help="download CIFAR when missing")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def register(sub) -> None:
    p = sub.add_parser("train", help="train one child network with an activation and print its result record")
    p.add_argument("--activation", required=True, help="a baseline name (relu, swish, ...) or an expression text")
    p.add_argument("--seed", type=whole(0, 2**32 - 1), default=0, help="seeds the child's initialisation and data order")
    _add_child_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("calibrate", help="train several activations over several seeds: mean, std, time per child")
    p.add_argument("--activations", required=True, metavar="LIST",
                   help='comma-separated baseline names or expressions, e.g. relu,swish,"max(x, sigmoid(x))",x')
    p.add_argument("--seeds", type=whole(1, 1000), default=3, help="children per activation (seeds 0..N-1)")
    _add_child_flags(p)
    p.set_defaults(func=cmd_calibrate)


def child_settings_from_args(args) -> ChildSettings:
    """The child settings the command runs with: defaults or the config's, then the flags. Raises ``UserError``.
    Sets ``args.metric`` / ``args.minimize``: the config's ``rewards.metric`` and ``rewards.minimize`` (the score
    shown: accuracy unless a user-defined child names another metric)."""
    from search.loop.config import load_config
    from search.loop.config_yaml import yaml_scalar

    if args.config is not None and not args.config.strip():
        raise UserError("--config: empty; name a search config, e.g. --config configs/quickstart.yaml")

    # the flags are overrides after --set's, so every value is read and checked as the config's own are (a finite
    # --lr), and the settings are checked once, all applied (--task table with --set child.table=...)
    given = {name: getattr(args, name) for _, name, _, _ in _CHILD_FLAGS if getattr(args, name) is not None}
    if args.download is not None:
        given["download"] = True
    config = load_config(args.config, [*args.overrides, *(f"child.{k}={yaml_scalar(v)}" for k, v in given.items())])
    args.metric, args.minimize = config.rewards.metric, config.rewards.minimize
    args.search_path = config.search_path() if args.config or args.overrides else [os.getcwd()]
    return config.child


def split_activations(text: str, flag: str = "--activations") -> list[str]:
    """``'relu, max(x, sigmoid(x)), x'`` -> ``['relu', 'max(x, sigmoid(x))', 'x']``: commas inside calls don't split.
    ``flag``: the option the list came from, named in the error."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        depth += (ch == "(") - (ch == ")")
        current.append(ch)
    parts.append("".join(current).strip())
    if any(not p for p in parts):
        raise UserError(f"{flag} {text!r}: empty entry in the comma-separated list")
    return parts


def _check_ready(settings: ChildSettings, activations: list[str], search_path: list[str] | None = None) -> None:
    """Fail fast, with one line, on input the user can fix: activations, device, dataset."""
    from evaluator.activations import activation_label
    from evaluator.tasks import task_named

    for activation in activations:
        activation_label(activation)
    task = task_named(settings.task)
    if task.user:  # imported in a forked process first: a module that exits at import cannot end the command
        from evaluator.user import check_user_function

        check_user_function(settings.task, search_path)
    task.prepare(settings, search_path)  # a table file, a user's function
    if task.dataset is None:
        return
    from evaluator.data import load_task
    from evaluator.train import resolve_device

    load_task(settings, resolve_device(settings.device))


def _score(r: dict, metric: str):
    from evaluator.result import ChildResult

    value = ChildResult.from_dict(r).metric(metric)
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def _format_record(r: dict, metric: str = "accuracy") -> str:
    value = _score(r, metric)
    acc = f"{value:.4f}" if value is not None else "-"
    loss = f"{r['train_loss']:.4f}" if r["train_loss"] is not None else "-"
    speed = f"{r['images_per_s']:,.0f} images/s" if r["images_per_s"] else "-"
    kernel = f" ({r['kernel']} kernel)" if r.get("kernel") else ""
    line = (f"{r['status']:<8} {r['split']} {metric} {acc}  train loss {loss}  steps {r['steps']}  "
            f"{r['wall_s']:.1f} s  {speed}  {r['device']}{kernel}  seed {r['seed']}  {r['activation']}")
    return line + (f"\n  error: {r['error']}" if r["error"] else "")


def cmd_train(args) -> int:
    from evaluator.train import train_child

    settings = child_settings_from_args(args)
    _check_ready(settings, [args.activation], args.search_path)
    result = train_child(settings, args.activation, args.seed, search_path=args.search_path)
    if not args.json and result.traceback:
        print(result.traceback.rstrip(), file=sys.stderr)
    record = result.to_dict()
    print(json.dumps(record) if args.json else _format_record(record, args.metric))
    return 0


def summarize(activation: str, records: list[dict], metric: str = "accuracy") -> dict:
    """Mean, standard deviation (over seeds, n-1), range and mean wall time of one activation's children (their
    ``metric``; a child without a finite one counts as not ok)."""
    accs = [_score(r, metric) for r in records if r["status"] == "ok" and _score(r, metric) is not None]
    mean, sd = mean_sd(accs)
    return {
        "activation": records[0]["activation"] if records else activation,
        "children": len(records),
        "ok": len(accs),
        "mean": mean,
        "std": sd,
        "min": min(accs) if accs else None,
        "max": max(accs) if accs else None,
        "s_per_child": statistics.fmean(r["wall_s"] for r in records) if records else None,
        "statuses": sorted({r["status"] for r in records}),
    }


def cmd_calibrate(args) -> int:
    from evaluator.train import train_child

    settings = child_settings_from_args(args)
    if args.seeds < 1:
        raise UserError(f"--seeds: must be >= 1, got {args.seeds}")
    activations = split_activations(args.activations)
    _check_ready(settings, activations, args.search_path)
    rows, records = [], []
    if not args.json:
        print(f"task {settings.task}, model {settings.resolved_model}, {settings.steps} steps of batch "
              f"{settings.batch_size}, {args.seeds} seeds, accuracy on {settings.split}"
              if args.metric == "accuracy" else f"task {settings.task}, options {settings.options}, {args.seeds} "
              f"seeds, {args.metric} on {settings.split} ({'lower' if args.minimize else 'higher'} is better)",
              flush=True)
    for activation in activations:
        mine = [train_child(settings, activation, seed, search_path=args.search_path).to_dict()
                for seed in range(args.seeds)]
        records += mine
        rows.append(summarize(activation, mine, args.metric))
        if not args.json:
            print(_format_row(rows[-1]), flush=True)
    if args.json:
        print(json.dumps({"settings": dataclasses.asdict(settings), "summary": rows, "records": records}))
    return 0


def _format_row(row: dict) -> str:
    def f(v, spec):
        return format(v, spec) if v is not None else "-"

    status = "" if row["statuses"] == ["ok"] else f"  statuses: {', '.join(row['statuses'])}"
    spread = f"{row['min']:.4f} to {row['max']:.4f}" if row["min"] is not None else "none (no ok child)"
    return (f"{row['activation']:<24} mean {f(row['mean'], '.4f')}  std {f(row['std'], '.4f')}  "
            f"range {spread}  ok {row['ok']}/{row['children']}  "
            f"{f(row['s_per_child'], '.1f')} s/child{status}")
