"""The ``actsearch`` command line. Each command group lives in its own module with a ``register(subparsers)``."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# Modules that contribute subcommands, in help order.
COMMAND_MODULES = ("search.cmd_space", "search.cmd_child", "search.cmd_run", "search.cmd_inspect")


class UserError(Exception):
    """Bad input a user can fix (config, expression, path, dataset): reported as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="actsearch", description="Search for activation functions.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    parser = build_parser()
    args = parser.parse_args(argv)
    from search.expression import ExpressionError

    try:
        return int(args.func(args) or 0)
    except (UserError, ExpressionError) as exc:
        print(f"actsearch {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
