"""``actsearch expr`` and ``actsearch space``: look at one candidate, or count a search space."""
from __future__ import annotations

import json
import random
import sys

from search.cli.common import whole
from search.language.expression import Expression
from search.language.index import ENUMERATION_LIMIT, FunctionIndex
from search.language.ops import operator_table_text
from search.language.space import MAX_CORE_UNITS, Space, format_tokens

SAMPLE = 2_000  # token strings fingerprinted where a space is too large to enumerate (about 20 ms each)


def register(sub) -> None:
    p = sub.add_parser("expr", help="canonical text, fingerprint, screen verdict and token form of an expression")
    p.add_argument("text", help="e.g. 'x * sigmoid(beta * x)'")
    p.add_argument("--core-units", type=whole(1, MAX_CORE_UNITS), default=None,
                   help="token form in a space of this many units")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_expr)

    p = sub.add_parser("space", help="count token strings, distinct functions and screened functions of a space")
    p.add_argument("--core-units", type=whole(1, MAX_CORE_UNITS), default=1)
    p.add_argument("--unary", nargs="+", default=None, metavar="NAME", help="unary subset (default: all 25)")
    p.add_argument("--binary", nargs="+", default=None, metavar="NAME", help="binary subset (default: all 10)")
    p.add_argument("--list", action="store_true", help="also print the operator table")
    p.add_argument("--sample", type=whole(1, 10_000_000), default=SAMPLE,
                   help=f"sample size when the space is too large to enumerate (default {SAMPLE:,}; each token string "
                        f"takes about 20 ms to fingerprint)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_space)


def cmd_expr(args) -> int:
    expr = Expression.parse(args.text)
    verdict = expr.screen()
    tokens = None
    if args.core_units is not None:
        Space(args.core_units)  # a bad number is refused (UserError) before any work
    for units in [args.core_units] if args.core_units else [1, 2]:  # the smallest space that holds it
        tokens = FunctionIndex.of(Space(units)).encode(expr)
        if tokens:
            break
    info = {
        "text": expr.text,
        "fingerprint": expr.fingerprint(),
        "screen": "ok" if verdict.ok else "rejected",
        "reason": verdict.reason,
        "betas": expr.n_betas,
        "tokens": list(tokens) if tokens else None,
        "core_units": len(tokens) // 5 if tokens else None,
    }
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"expression   {info['text']}")
    print(f"fingerprint  {info['fingerprint']}")
    print(f"screen       {info['screen']}" + ("" if verdict.ok else f" ({verdict.reason})"))
    print(f"betas        {info['betas']}")
    print(f"tokens       {format_tokens(tokens) if tokens else '(no core-unit token form)'}")
    return 0


def _space_from_args(args) -> Space:
    kwargs = {"core_units": args.core_units}
    if args.unary:
        kwargs["unary"] = tuple(args.unary)
    if args.binary:
        kwargs["binary"] = tuple(args.binary)
    return Space(**kwargs)


def space_summary(space: Space, sample: int = SAMPLE, seed: int = 0) -> dict:
    """Token strings, distinct functions and screen passes: exact when enumerable, else estimated from a sample."""
    index = FunctionIndex.of(space)
    exact = index.enumerable
    if exact:
        first = index.distinct()  # fingerprint -> its first token string
    else:
        rng = random.Random(seed)
        strings = [tuple(rng.choice(c) for c in space.choices) for _ in range(sample)]
        first = {}
        for tokens in strings:
            first.setdefault(index.fingerprint(tokens), tokens)
    verdicts = [index.verdict(tokens, reject_linear=True).ok for tokens in first.values()]
    out = {
        "core_units": space.core_units,
        "unary": len(space.unary),
        "binary": len(space.binary),
        "token_strings": space.size,
        "exact": exact,
    }
    if exact:
        out["distinct_functions"] = len(verdicts)
        out["passing_screen"] = sum(verdicts)
    else:
        out["sampled"] = len(strings)
        out["distinct_in_sample"] = len(verdicts)
        out["passing_screen_in_sample"] = sum(verdicts)
    return out


def cmd_space(args) -> int:
    space = _space_from_args(args)
    if not args.json and not FunctionIndex.of(space).enumerable:
        print(f"fingerprinting a random sample of {args.sample:,} of its {space.size:,} token strings "
              f"(about {max(1, round(args.sample * 0.02))} s)...", file=sys.stderr, flush=True)
    summary = space_summary(space, args.sample)
    if args.json:
        print(json.dumps(summary))
        return 0
    if args.list:
        print(operator_table_text())
        print()
    print(f"core units          {summary['core_units']} ({summary['unary']} unary, {summary['binary']} binary)")
    print(f"token strings       {summary['token_strings']:,}")
    if summary["exact"]:
        print(f"distinct functions  {summary['distinct_functions']:,}")
        print(f"passing the screen  {summary['passing_screen']:,}")
    else:
        n = summary["sampled"]
        print(f"too many to enumerate (limit {ENUMERATION_LIMIT:,}); in a random sample of {n:,} token strings:")
        print(f"distinct functions  {summary['distinct_in_sample']:,} ({summary['distinct_in_sample'] / n:.1%} of the "
              f"sample)")
        print(f"passing the screen  {summary['passing_screen_in_sample']:,} of those")
    return 0
