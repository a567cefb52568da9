"""The ``actsearch`` command line. Each command group lives in its own module with a ``register(subparsers)``."""
from __future__ import annotations

import argparse
import errno
import os
import sys

from search.language.shadowing import exit_if_shadowed

exit_if_shadowed()  # a user's evaluator.py or search/ ahead on the path would break the imports below: say which
from search.cli import child, dashboard, export, inspect, run, significance, space, table  # noqa: E402
from search.cli.common import Parser  # noqa: E402
from search.language.errors import UserError  # noqa: E402
from search.loop.progress import term_as_interrupt  # noqa: E402

# The modules that contribute subcommands, in help order: each has a ``register(subparsers)``.
COMMANDS = (space, child, run, inspect, dashboard, significance, export, table)


class _Version(argparse.Action):
    """``--version``: the installed package's version and the checkout's commit where there is one (``git
    rev-parse``), found only when asked (argparse's own version action takes the text when the parser is built: two
    git processes for every command)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import PackageNotFoundError, version

        from search.loop.rundir import git_commit

        try:
            installed = version("actsearch")
        except PackageNotFoundError:
            installed = "(not installed)"
        commit, dirty = git_commit()
        print(f"actsearch {installed}" + (f", commit {commit[:12]}{' with local changes' * bool(dirty)}" if commit
                                          else ""))
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="actsearch", description="Search for activation functions.")
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    parser.set_defaults(commands=sub.choices)  # each command's own parser, to name it in an error
    return parser


MAX_ERROR_LINE = 500  # characters of the one line a refused command prints (two long paths fit)


def one_error_line(line: str) -> str:
    """``line`` cut to ``MAX_ERROR_LINE`` characters by its middle, not its end: the end says what to do next (e.g.
    "resume with `actsearch resume RUN`")."""
    if len(line) <= MAX_ERROR_LINE:
        return line
    tail = MAX_ERROR_LINE // 3
    return line[:MAX_ERROR_LINE - tail - 5] + " ... " + line[-tail:]


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # said by the command's parser: "actsearch top: error: unrecognized arguments: --top 0"
            args.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # a bad command line (one line already printed) or --help
        return int(exc.code or 0)
    try:
        with term_as_interrupt():
            return int(args.func(args) or 0)
    except UserError as exc:
        line = " ".join(f"actsearch {args.command}: error: {exc}".split())  # one line, whatever the message carried
        print(one_error_line(line), file=sys.stderr)
        return 2
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):  # `actsearch top RUN | head`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
            return 0
        if exc.errno != errno.ENAMETOOLONG:  # any path a user gave; other system errors are not bad input
            raise
        print(one_error_line(f"actsearch {args.command}: error: {exc.filename!s:.80}...: file name too long"),
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
