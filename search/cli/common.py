"""What every command module shares: the parser class, whole-number arguments, output files checked before any work,
and opening an existing run read-only."""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

from search.language.errors import UserError

NUMBER = re.compile(r"-\d[\d.e+-]*")  # a negative number: argparse reads it as a value
LONG = re.compile(r"--([A-Za-z][\w-]*)?")  # a long option (or --), known or not
PICTURE_SUFFIXES = (".png", ".pdf", ".svg")  # the formats a plot is written in (matplotlib picks it by suffix)


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (no usage block) with exit code 2, like every other
    input error; ``actsearch COMMAND --help`` shows the usage."""

    given: tuple[str, ...] = ()  # the command line this parser was given (error's hint reads it)

    def parse_known_args(self, args=None, namespace=None):
        self.given = tuple(str(a) for a in (sys.argv[1:] if args is None else args))
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message[:240]} ({self._hint()})\n")

    def _hint(self) -> str:
        """How to pass a value that starts with '-' (an expression such as '-(-x)', which argparse reads as an
        option) where the command line has one; else where the usage is."""
        known = self._option_string_actions
        for i, arg in enumerate(self.given):
            name = arg.split("=", 1)[0]
            if not arg.startswith("-") or NUMBER.fullmatch(arg) or LONG.fullmatch(name) or name in known:
                continue  # a value, a number, or meant as an option (a mistyped --name says so already)
            before = known.get(self.given[i - 1]) if i else None
            if before is not None and before.nargs != 0:  # the value of the option before it
                return f"a value that starts with '-' is read as an option: write {self.given[i - 1]}='{arg}'"
            if any(not a.option_strings for a in self._actions):  # a positional argument
                return (f"a value that starts with '-' is read as an option: put -- before it, as in {self.prog} -- "
                        f"'{arg}'")
        return f"see {self.prog} --help"


def whole(low: int, high: int):
    """An argparse ``type``: a whole number from ``low`` to ``high``, read without arithmetic on huge text."""
    def parse(text: str) -> int:
        if not re.fullmatch(r"\s*[-+]?\d{1,18}\s*", text, re.ASCII) or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low:,} to {high:,}, got {text[:40]!r}")
        return int(text)
    return parse


def output_file(path: str, flag: str, example: str, suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` as a file a command can write at its end, checked before any work starts: not a folder, in an
    existing folder this process can create files in, and (when ``suffixes`` are given) ending in one of them.
    flag: the option that named it (``-o``); example: a file name to suggest. Raises ``UserError``."""
    out = Path(path)
    try:
        if out.is_dir():
            raise UserError(f"{flag} {out}: is a directory; give a file name such as {out / example}")
        if not out.parent.is_dir():
            raise UserError(f"{flag} {out}: " + (f"{out.parent} is not a directory" if out.parent.exists()
                                                 else f"no such directory {out.parent}"))
        if suffixes and out.suffix.lower() not in suffixes:
            raise UserError(f"{flag} {out}: must end in {', '.join(suffixes[:-1])}{' or ' * (len(suffixes) > 1)}"
                            f"{suffixes[-1]}")
        out.exists()  # a name the system refuses (too long) fails here, not after the work
        handle, probe = tempfile.mkstemp(dir=out.parent, prefix=".actsearch-", suffix=".probe")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{flag} {str(out)[:120]}: cannot write there: {exc.strerror or exc}") from None
    return out


def open_run(run_dir: str):
    """``(run_dir, config, store)`` of an existing run, the store read-only. Raises ``UserError``."""
    from search.loop.rundir import require_run_dir, run_config
    from search.loop.store import Store

    path = require_run_dir(run_dir)
    store = Store.open(path, readonly=True)
    try:
        return path, run_config(path, store), store
    except BaseException:
        store.close()
        raise
