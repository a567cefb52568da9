"""The run directory: its layout, creating and opening it, its lock, checkpoints and provenance.

``results/<name>/``::

    config.yaml                 the resolved config (every default filled in); budget / resources may change on resume
    store.sqlite                the run store (search.loop.store): proposals, results, journal, updates, sessions, and
                                the search definition the run was created with (seed, space, controller, child, rewards)
    checkpoints/controller.pt   the proposer's state after its latest update (atomic)
    provenance.json             package version, git commit, torch / ray / python versions, devices, per session
    run.log                     one line per result, update and session, plus periodic progress
    run.lock                    held by the process driving the run (a search or a significance test)

The store is the truth: ``config.yaml`` is for people to read, and a search definition edited there is refused.
"""
from __future__ import annotations

import io
import json
import os
import platform
import shutil
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from search.language.errors import UserError
from search.language.files import atomic_write
from search.language.identity import FINGERPRINT_VERSION
from search.loop.config import SEARCH_SECTIONS, Config, config_from_dict, describe, load_config
from search.loop.store import STORE_FILE, Store, StoreError

CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_FILE = "controller.pt"
PROVENANCE_FILE = "provenance.json"
LOG_FILE = "run.log"
LOCK_FILE = "run.lock"
SEARCH_META = "search"  # the store's copy of the search definition
FINGERPRINT_META = "fingerprint_version"  # which fingerprint identifies the run's functions (absent: version 1)


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / CONFIG_FILE).is_file() and (Path(path) / STORE_FILE).is_file()


def require_run_dir(path: str | Path) -> Path:
    """``path`` as a ``Path`` when it is a run directory; ``UserError`` saying what it lacks otherwise."""
    path = Path(path)
    if not is_run_dir(path):
        raise UserError(f"{path}: not a run directory (it needs {CONFIG_FILE} and {STORE_FILE}); start one with "
                        f"`actsearch run CONFIG --name NAME`")
    return path


def require_writable_run_dir(path: str | Path) -> Path:
    """``require_run_dir``, and the folder and its files writable (a driver writes the store, log, lock, checkpoint)."""
    path = require_run_dir(path)
    for item in (path, path / STORE_FILE, path / CHECKPOINT_DIR):
        if item.exists() and not os.access(item, os.W_OK):
            raise UserError(f"{item}: not writable; a run is continued only where it can be written")
    return path


def create_run(run_dir: Path, config: Config) -> None:
    """Create ``run_dir`` with the resolved config, an empty store holding the search definition, and the checkpoint
    folder, atomically (a crash leaves no half-made run). Raises ``FileExistsError`` when ``run_dir`` exists."""
    run_dir = Path(run_dir)
    if run_dir.exists():
        raise FileExistsError(run_dir)
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{run_dir.parent}: cannot make the folder for runs ({exc.strerror or exc})") from None
    if not os.access(run_dir.parent, os.W_OK):
        raise UserError(f"{run_dir.parent}: not writable; runs cannot be created there")
    tmp = run_dir.with_name(f".{run_dir.name}.creating-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        atomic_write(tmp / CONFIG_FILE, config.to_yaml())
        (tmp / CHECKPOINT_DIR).mkdir()
        with Store.open(tmp / STORE_FILE, create=True) as store:
            store.set_meta("name", run_dir.name)
            store.set_meta(SEARCH_META, search_definition(config))
            store.set_meta(FINGERPRINT_META, FINGERPRINT_VERSION)
        os.rename(tmp, run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def search_definition(config: Config) -> dict:
    """What a run searches (the sections a resume may not change), as plain data."""
    full = config.to_dict()
    return {name: full[name] for name in SEARCH_SECTIONS}


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the block: one driving process per run. ``UserError`` at once when another holds it."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(Path(run_dir) / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(f"{run_dir} is being run by another process right now") from None
    except OSError as exc:
        raise UserError(f"{Path(run_dir) / LOCK_FILE}: cannot take the run's lock ({exc.strerror or exc})") from None
    try:
        yield
    finally:
        lock.release()


def run_config(run_dir: Path, store: Store) -> Config:
    """The run's config from ``config.yaml``, checked against the search definition the store holds: an edit to
    ``seed``, ``space``, ``controller``, ``child`` or ``rewards`` is refused (``UserError`` naming the field)."""
    config = load_config(Path(run_dir) / CONFIG_FILE)
    stored = store.get_meta(SEARCH_META)
    if stored is None:  # a run made before the store kept the definition: config.yaml is all there is
        return config
    created = config_from_dict({**config.to_dict(), **stored})
    differences = created.section_differences(config, SEARCH_SECTIONS)
    if differences:
        name, old, new = differences[0]
        raise UserError(f"{Path(run_dir) / CONFIG_FILE}: {name} was {describe(old)} when the run was created, the "
                        f"file now says {describe(new)}; a run's search cannot change (put it back, or start a new "
                        f"run)")
    return config


def check_fingerprints(run_dir: Path, store: Store) -> None:
    """``UserError`` when the run's functions were identified by another fingerprint than this actsearch computes:
    continuing would give one function two identities (a duplicate trained again, or a reward on the wrong function)."""
    version = store.get_meta(FINGERPRINT_META, 1)
    if version != FINGERPRINT_VERSION and store.proposals():
        raise UserError(f"{run_dir}: its candidates carry fingerprints of version {version}, this actsearch computes "
                        f"version {FINGERPRINT_VERSION}; finish it with the actsearch that made it (provenance.json "
                        f"names the commit), or start a new run")


def write_run_config(run_dir: Path, config: Config) -> None:
    atomic_write(Path(run_dir) / CONFIG_FILE, config.to_yaml())


# ---------------------------------------------------------------- checkpoints

def checkpoint_path(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / CHECKPOINT_FILE


def write_checkpoint(path: Path, payload: dict) -> None:
    """``torch.save(payload)`` to ``path`` atomically."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write(path, buf.getvalue())


def read_checkpoint(path: Path) -> dict | None:
    """The checkpoint at ``path``, or None when there is none. ``StoreError`` in one line when it is damaged.

    A temporary file a killed writer left beside it is removed (only the run's lock holder reads checkpoints)."""
    for torn in path.parent.glob(f".{path.name}.tmp*"):
        torn.unlink(missing_ok=True)
    if not path.exists():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception:  # an atomic write cannot leave a torn file; this is damage from outside
        raise StoreError(f"{path}: damaged, not a checkpoint torch can read; restore it from a backup or start a new "
                         f"run") from None


# ---------------------------------------------------------------- provenance

def _git_commit() -> tuple[str | None, bool | None]:
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None, None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)
        return commit.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def provenance_now() -> dict:
    """What produced this session's results: versions, git commit, host, the driver's devices."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    commit, dirty = _git_commit()
    cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() \
        else []
    return {"actsearch": installed("actsearch"), "git_commit": commit, "git_dirty": dirty,
            "python": platform.python_version(), "torch": torch.__version__, "ray": installed("ray"),
            "numpy": np.__version__, "platform": platform.platform(), "host": socket.gethostname(),
            "driver_cuda_devices": cuda}


def write_provenance(run_dir: Path, session: dict) -> None:
    """Add or replace ``session`` (keyed by ``session["session"]``) in the run's provenance file."""
    path = Path(run_dir) / PROVENANCE_FILE
    data = json.loads(path.read_text()) if path.exists() else {"sessions": []}
    sessions = [s for s in data.get("sessions", []) if s.get("session") != session.get("session")] + [session]
    data = {**{k: v for k, v in session.items() if k not in ("session", "started_at", "ended_at", "outcome")},
            "sessions": sessions}
    atomic_write(path, json.dumps(data, indent=2, default=str) + "\n")
