"""The ``actsearch`` command line. Each command group lives in its own module with a ``register(subparsers)``."""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

from search.language.errors import UserError

# Modules that contribute subcommands, in help order.
COMMAND_MODULES = ("search.cli.space", "search.cli.child", "search.cli.run", "search.cli.inspect", "search.cli.table")


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (no usage block) with exit code 2, like every other
    input error; ``actsearch COMMAND --help`` shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message[:240]} (see {self.prog} --help)\n")


def whole(low: int, high: int):
    """An argparse ``type``: a whole number from ``low`` to ``high``, read without arithmetic on huge text."""
    def parse(text: str) -> int:
        if not re.fullmatch(r"\s*[-+]?\d{1,18}\s*", text, re.ASCII) or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low:,} to {high:,}, got {text[:40]!r}")
        return int(text)
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="actsearch", description="Search for activation functions.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a bad command line (one line already printed) or --help
        return int(exc.code or 0)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        line = " ".join(f"actsearch {args.command}: error: {exc}".split())  # one line, whatever the message carried
        print(line if len(line) < 300 else line[:296] + "...", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `actsearch top RUN | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes stdout
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
