"""User-defined children: search for an activation for your own model, trained by your own function.

``child.task`` names the function instead of a built-in task: ``"my_project.children:train_lm"`` (an importable
module) or ``"path/to/children.py:train_lm"`` (a file; a relative path is read from the directory the search was
started in). The function is as small as a Ray Tune trainable::

    def train_lm(activation, seed, device, options):
        model = MyModel(act=activation)          # activation(channels) -> nn.Module, one call per site
        ...                                      # train it from `seed` on `device` ("cpu" / "cuda:0", a torch.device)
        return {"val_bpc": 1.83, "train_loss": 2.1}   # metrics: numbers; rewards.metric names the one searched on

``activation`` is an ``Activation``: call it with a site's channel count for a fresh module (a candidate's betas are
per site and per channel; pass 1 for one shared beta), or read ``activation.expression`` (the ``Expression``, None for a
native baseline such as ``relu``) and ``activation.name``. ``options`` is ``child.options`` from the config, a plain
dict. The function must accept those four arguments positionally. A ``steps`` entry (the training steps it ran) lets
the run count its children's compute (``actsearch train`` and early stopping's savings); without one a child counts 0.

``evaluator.train.train_child`` runs the function inside ``evaluator.train.train_child``'s record discipline: it never raises;
an exception becomes a "failed" record (``fault`` "candidate", ``error`` its last line, ``traceback`` the whole text,
which the driver writes into run.log and keeps out of the store); a return value that is not a mapping of names to
numbers is "failed" with the reason. ``child.time_limit_s`` is not checked inside the function (actsearch cannot
stop it between steps): the pool cancels a child after ``resources.child_timeout_s`` (by default twice the limit plus
a minute) and records "timeout". Whether the reward metric is present and finite is judged by the search
(``evaluator.result.reward``), which knows ``rewards.metric``.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from torch import nn

from evaluator.result import one_line
from search.language.errors import UserError

ARGUMENTS = ("activation", "seed", "device", "options")


def is_user_task(task: str) -> bool:
    """Whether ``child.task`` names a user function (``module:function`` or ``file.py:function``)."""
    return isinstance(task, str) and ":" in task


def _split(task: str) -> tuple[str, str]:
    where, _, name = task.strip().rpartition(":")
    return where.strip(), name.strip()


def _is_file(where: str) -> bool:
    return where.endswith(".py") or "/" in where or os.sep in where


def _places(search_path: Sequence[str] | None) -> list[Path]:
    """Where relative files and modules are looked for: the current directory (on a cluster's worker: the uploaded
    working_dir), then ``search_path`` (the driver's directory and ``resources.working_dir``)."""
    out = [Path.cwd()]
    for place in search_path or ():
        if place and Path(place).is_dir() and Path(place).resolve() not in out:
            out.append(Path(place).resolve())
    return out


def resolve_path(where: str, search_path: Sequence[str] | None = None) -> Path | None:
    """A user file's path: as given when absolute, else the first of ``_places`` that has it; None when none has."""
    path = Path(where).expanduser()
    if path.is_absolute():
        return path if path.is_file() else None
    for base in _places(search_path):
        if (base / path).is_file():
            return (base / path).resolve()
    return None


_MODULES: dict[tuple[str, float], Any] = {}


def _import_file(path: Path) -> Any:
    key = (str(path), path.stat().st_mtime)
    if key in _MODULES:
        return _MODULES[key]
    name = f"actsearch_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    if str(path.parent) not in sys.path:  # the file may import its neighbours
        sys.path.insert(0, str(path.parent))
    sys.modules[name] = module  # pickling (Ray) and dataclasses find the module by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    _MODULES[key] = module
    return module


def load_user_function(task: str, search_path: Sequence[str] | None = None) -> Callable:
    """The function ``child.task`` names, imported and checked; ``UserError`` naming what is wrong: a file that is
    not there, a module or file that cannot be imported (with the exception's last line), a missing function,
    something not callable, or a signature that cannot take ``(activation, seed, device, options)``.
    search_path: folders where a relative file or a module is looked for after the current directory."""
    where, name = _split(task)
    label = f"child.task: {task!r}"
    if not where or not name or not name.isidentifier():
        raise UserError(f"{label}: expected MODULE:FUNCTION or PATH.py:FUNCTION, e.g. my_project.children:train "
                        f"or examples/char_lm.py:train")
    places = _places(search_path)
    if _is_file(where):
        path = resolve_path(where, search_path)
        if path is None:
            looked = "" if Path(where).is_absolute() else f" (looked in {', '.join(map(str, places))})"
            raise UserError(f"{label}: no such file {where!r}{looked}")
        what = f"file {where}"
        load = lambda: _import_file(path)  # noqa: E731
    else:
        what = f"module {where}"
        for place in places:  # as `python -m` would see it, plus the driver's directory and the working_dir
            if str(place) not in sys.path:
                sys.path.append(str(place))
        importlib.invalidate_caches()
        load = lambda: importlib.import_module(where)  # noqa: E731
    try:
        module = load()
    except SystemExit as exc:  # sys.exit at import: a script, not a module; the command goes on to say so
        raise UserError(f"{label}: importing {what} calls sys.exit({'' if exc.code is None else repr(exc.code)[:60]}); "
                        f"a module of children must not exit at import") from None
    except Exception as exc:  # an import that fails is the user's setup: name it, in one line
        raise UserError(f"{label}: cannot import {what}: {one_line(exc)}") from None
    fn = getattr(module, name, None)
    if fn is None:
        raise UserError(f"{label}: {what} has no function {name!r}")
    if not callable(fn):
        raise UserError(f"{label}: {where}.{name} is a {type(fn).__name__}, not a function")
    problem = signature_problem(fn)
    if problem:
        raise UserError(f"{label}: {problem}")
    return fn


def signature_problem(fn: Callable) -> str | None:
    """Why ``fn`` cannot be called as ``fn(activation, seed, device, options)``; None when it can."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # a builtin or C function without a signature: let the call decide
    try:
        sig.bind(*ARGUMENTS)
    except TypeError as exc:
        return (f"{getattr(fn, '__name__', fn)}{sig} cannot be called as "
                f"{getattr(fn, '__name__', 'f')}(activation, seed, device, options): {exc}")
    return None


def user_task_problem(task: str, search_path: Sequence[str] | None = None) -> str | None:
    """The ``UserError`` message (without the ``child.task:`` prefix) when the user function cannot be loaded."""
    try:
        load_user_function(task, search_path)
    except UserError as exc:
        return str(exc).removeprefix("child.task: ")
    return None


PREFLIGHT_TIMEOUT_S = 600.0  # an import in the forked process taking longer is retried in this process
_CUDA_IN_FORK = "Cannot re-initialize CUDA in forked subprocess"


def check_user_function(task: str, search_path: Sequence[str] | None = None,
                        timeout_s: float = PREFLIGHT_TIMEOUT_S) -> Callable:
    """``load_user_function`` for a command's pre-flight: the first import runs in a forked process first, so a module
    that ends its process at import (``os._exit``, ``sys.exit``, a crash in native code) is a ``UserError`` naming it,
    not the end of the command; then the function is imported here. Where there is no ``os.fork`` (Windows) the
    import is guarded in this process only (``sys.exit`` is caught, ``os._exit`` cannot be)."""
    if hasattr(os, "fork") and not _imported(task, search_path):
        problem = _import_in_fork(task, search_path, timeout_s)
        if problem:
            raise UserError(problem)
    return load_user_function(task, search_path)


def _imported(task: str, search_path: Sequence[str] | None) -> bool:
    """Whether ``task``'s module is imported in this process already (a fork would only import it again)."""
    where, _ = _split(task)
    if not _is_file(where):
        return where in sys.modules
    path = resolve_path(where, search_path)
    return path is not None and (str(path), path.stat().st_mtime) in _MODULES


def _import_in_fork(task: str, search_path: Sequence[str] | None, timeout_s: float) -> str | None:
    """Load ``task``'s function in a forked process, whose output goes nowhere; the ``UserError`` message when the
    load fails or the process ends before it answers, None when it loads (or the fork cannot tell: CUDA initialised
    here, or no answer within ``timeout_s``; the import in this process then decides)."""
    read_end, write_end = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid == 0:  # the forked process: load, answer through the pipe, end without the parent's exit handlers
        try:
            os.close(read_end)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            try:
                load_user_function(task, search_path)
                message = ""
            except UserError as exc:
                message = str(exc)
            except BaseException as exc:  # whatever it is, it is the answer
                message = f"child.task: {task!r}: cannot import it: {one_line(exc)}"
            body = message.encode()[:60_000]
            os.write(write_end, b"%d\n%s" % (len(body), body))
        finally:
            os._exit(0)
    os.close(write_end)
    answer, message, deadline, timed_out, finished = b"", None, time.monotonic() + timeout_s, False, False
    try:
        while message is None:
            ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                timed_out = True
                break
            chunk = os.read(read_end, 65_536)
            if not chunk:  # the process ended without answering
                break
            answer += chunk
            head, newline, body = answer.partition(b"\n")
            if newline and len(body) >= int(head):
                message = body.decode(errors="replace")
        finished = True
    finally:
        os.close(read_end)
        if timed_out or not finished:  # still importing, or this process was interrupted: stop it
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if timed_out:
        return None
    if message is not None:
        return None if not message or _CUDA_IN_FORK in message else message
    code = os.waitstatus_to_exitcode(status)
    how = f"exit code {code}" if code >= 0 else \
        f"signal {signal.Signals(-code).name}" if -code in signal.valid_signals() else f"signal {-code}"
    where, _ = _split(task)
    what = f"file {where}" if _is_file(where) else f"module {where}"
    return (f"child.task: {task!r}: importing {what} ends the process ({how}); a module of children must not exit "
            f"at import")


def user_source_file(task: str, search_path: Sequence[str] | None = None) -> Path | None:
    """The file that holds ``child.task``'s function: the file named, or the module's source file (a package's
    ``__init__.py``); None when it has none (a module built into Python or not found)."""
    where, _ = _split(task)
    if _is_file(where):
        return resolve_path(where, search_path)
    origin = getattr(sys.modules.get(where), "__file__", None)
    if origin is None:
        try:
            spec = importlib.util.find_spec(where)
        except (ImportError, ValueError):
            return None
        origin = spec.origin if spec is not None and spec.has_location else None
    return Path(origin).resolve() if origin else None


class Activation:
    """What a user function receives: ``activation(channels) -> nn.Module`` (a fresh module per call), with
    ``name`` (a baseline's name or the candidate's canonical text) and ``expression`` (the ``Expression``; None for a
    native baseline such as relu or gelu)."""

    def __init__(self, name: str, factory: Callable[[int], nn.Module], expression: Any = None):
        self.name, self._factory, self.expression = name, factory, expression

    def __call__(self, channels: int = 1) -> nn.Module:
        return self._factory(channels)

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"


def make_activation(activation: str, compile: bool | None = None) -> Activation:
    """The ``Activation`` for a baseline name or expression text (``UserError`` when it is neither)."""
    from evaluator.activations import _resolve, activation_factory, activation_label
    from search.language.expression import Expression

    resolved = _resolve(activation)
    expression = resolved if isinstance(resolved, Expression) else None
    if resolved == "swish":
        from evaluator.activations import SWISH

        expression = Expression.parse(SWISH)
    return Activation(activation_label(activation), activation_factory(activation, compile=compile), expression)


def clean_metrics(value: Any) -> tuple[dict | None, str | None]:
    """``(metrics, None)`` for a mapping of names to numbers (bools and numpy / torch scalars become floats; None
    kept), else ``(None, why not)``."""
    if not isinstance(value, dict):
        return None, f"the child returned {type(value).__name__}, not a dict of metrics"
    out: dict[str, float | None] = {}
    for key, v in value.items():
        if not isinstance(key, str):
            return None, f"the child returned a metric named {key!r}; names must be strings"
        if v is None:
            out[key] = None
            continue
        if hasattr(v, "item") and callable(v.item):
            try:
                v = v.item()
            except (ValueError, RuntimeError):
                return None, f"the child returned metric {key!r} as a {type(v).__name__} of more than one value"
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None, f"the child returned metric {key!r} = {str(v)[:60]!r}, not a number"
        out[key] = float(v) if math.isfinite(v) else str(v)  # JSON has no NaN: keep it visible as text
    return out, None
