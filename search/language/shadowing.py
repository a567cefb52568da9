"""Module shadowing: a user's ``evaluator.py``, ``search.py`` or ``controller/`` that Python would import instead of this
installation's top-level packages ``search``, ``controller`` and ``evaluator``.

A folder early on ``sys.path`` (the current directory under ``python -m``, a Ray worker's ``working_dir``) that holds
one of those names hides the package and breaks every import below it with a message that names neither file.
``shadowing_problem(folders)`` says which file shadows which package, in one line; the command line checks its own
path before it imports anything, the config checks ``resources.working_dir`` and ``py_modules``, and the loop checks
a worker's path when it starts there.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable, Sequence

from search.language.errors import UserError

PACKAGES = ("search", "controller", "evaluator")
ROOT = Path(__file__).resolve().parents[2]  # the folder that holds this installation's three packages


def _shadow_in(folder: Path, name: str) -> Path | None:
    """The package folder or module file ``name`` in ``folder`` that an import would take; None when there is none. A
    folder without ``__init__.py`` is a namespace portion, which a regular package later on the path still beats."""
    if (folder / name / "__init__.py").is_file():
        return folder / name
    if (folder / f"{name}.py").is_file():
        return folder / f"{name}.py"
    return None


def shadowing_problem(folders: Iterable[str | os.PathLike]) -> str | None:
    """One line naming the first file or folder in ``folders`` that would be imported instead of this installation's
    ``search``, ``controller`` or ``evaluator``; None when none would. ``""`` means the current directory."""
    for entry in folders:
        folder = Path(entry or os.getcwd())
        try:
            if not folder.is_dir() or folder.resolve() == ROOT:
                continue
        except OSError:
            continue
        for name in PACKAGES:
            found = _shadow_in(folder, name)
            if found is not None:
                return (f"{found} shadows actsearch's package {name!r} (installed at {ROOT / name}): Python would "
                        f"import it instead; rename it, or run from another folder")
    return None


def path_before_installation(path: Sequence[str] | None = None) -> list[str]:
    """The entries of ``path`` (default ``sys.path``) searched before the one holding this installation's packages:
    the only places whose files can shadow them."""
    entries = list(sys.path if path is None else path)
    for i, entry in enumerate(entries):
        try:
            if Path(entry or os.getcwd()).resolve() == ROOT:
                return entries[:i]
        except OSError:
            continue
    return entries


def check_shadowing(folders: Iterable[str | os.PathLike] | None = None) -> None:
    """``UserError`` naming the file when one in ``folders`` (default: ``sys.path`` before this installation) shadows
    one of the packages."""
    problem = shadowing_problem(path_before_installation() if folders is None else folders)
    if problem:
        raise UserError(problem)


def exit_if_shadowed() -> None:
    """For the command line, before it imports ``controller`` and ``evaluator``: print the shadowing file in one line
    and exit with code 2 (an import that fails would otherwise end in a traceback naming neither file)."""
    problem = shadowing_problem(path_before_installation())
    if problem:
        print(f"actsearch: error: {problem}", file=sys.stderr)
        raise SystemExit(2)
