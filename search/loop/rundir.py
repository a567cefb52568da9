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

import hashlib
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import time
import warnings
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
SOURCES_META = "reward_sources"  # the files that define the reward (table, user child's source): path and sha256 each
ACCEPTED_META = "accepted_changes"  # changes of those files accepted on resume with ACCEPT_FLAG: when, old and new
FOLDER_META = "created_in"  # the folder the run was created in: where its relative files are found from elsewhere
ACCEPT_FLAG = "--accept-changed-child"
FINGERPRINT_META = "fingerprint_version"  # which fingerprint identifies the run's functions (absent: version 1)


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / CONFIG_FILE).is_file() and (Path(path) / STORE_FILE).is_file()


def require_run_dir(path: str | Path) -> Path:
    """``path`` as a ``Path`` when it is a run directory; ``UserError`` saying what it lacks otherwise."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such folder (a run directory holds {CONFIG_FILE} and {STORE_FILE}); start one "
                        f"with `actsearch run CONFIG --name NAME`")
    if not is_run_dir(path):
        raise UserError(f"{path}: not a run directory (it needs {CONFIG_FILE} and {STORE_FILE}); start one with "
                        f"`actsearch run CONFIG --name NAME`")
    return path


def require_writable_run_dir(path: str | Path) -> Path:
    """``require_run_dir``, and the folder and its files writable (a driver writes the store, log, lock, checkpoint)."""
    path = require_run_dir(path)
    for item in (path, path / STORE_FILE, path / LOG_FILE, path / CHECKPOINT_DIR):
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
        sources = reward_sources(config)
        with Store.open(tmp / STORE_FILE, create=True) as store:
            store.set_meta("name", run_dir.name)
            store.set_meta(SEARCH_META, search_definition(config))
            store.set_meta(FINGERPRINT_META, FINGERPRINT_VERSION)
            store.set_meta(SOURCES_META, sources)
            store.set_meta(FOLDER_META, os.getcwd())
        _write_run_facts(tmp, {SOURCES_META: sources, FOLDER_META: os.getcwd()})
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
    path = Path(run_dir) / CONFIG_FILE
    try:
        config = load_config(path)
    except UserError as exc:  # a hand-edited value: say which file holds it
        raise UserError(str(exc) if str(exc).startswith(f"config {path}") else f"{path}: {exc}") from None
    config.run_folder = store.get_meta(FOLDER_META) or ""
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


# ---------------------------------------------------------------- what defines the reward

def reward_sources(config: Config) -> dict[str, dict]:
    """The files that define a child's reward besides the settings, keyed by the field that names them: the table a
    replay reads (``child.table``) and a user child's source file (``child.task``; a module's file), each
    ``{"given", "path" (absolute), "sha256"}``. Empty for a built-in task; a file not found is left out
    (``check_child_code`` names it)."""
    from evaluator.table_file import TableError, resolve_table_path
    from evaluator.tasks import task_named
    from evaluator.user import user_source_file

    task, places = task_named(config.child.task), config.search_path()
    found: dict[str, tuple[str, Path | None]] = {}
    if task.reads_table:
        try:
            found["child.table"] = (config.child.table, resolve_table_path(config.child.table, places))
        except TableError:
            pass
    if task.user:
        found["child.task"] = (config.child.task, user_source_file(config.child.task, places))
    return {name: {"given": given, "path": str(path), "sha256": file_sha256(path)}
            for name, (given, path) in found.items() if path is not None}


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def changed_sources(recorded: dict | None, now: dict) -> list[dict]:
    """``{"field", "old", "new"}`` for each file the run ``recorded`` whose contents differ ``now`` (a file found at
    another path with the same digest is the same file)."""
    return [{"field": name, "old": old, "new": now[name]} for name, old in (recorded or {}).items()
            if name in now and now[name]["sha256"] != old.get("sha256")]


def check_reward_sources(run_dir: Path, config: Config, accept: bool = False) -> tuple[dict, list[dict], bool]:
    """Before a session of the run in ``run_dir`` with ``config``: ``(the files now, their changes since the run
    recorded them, whether they need recording)``. ``UserError`` naming the first changed file unless ``accept``: a
    resume must not mix rewards of two tables or two versions of a child. A run made before the files were recorded
    needs them recorded and resumes as it did."""
    with Store.open(run_dir, readonly=True) as store:
        recorded = store.get_meta(SOURCES_META)
    now = reward_sources(config)
    changes = changed_sources(recorded, now)
    if changes and not accept:
        change = changes[0]
        old, new = change["old"], change["new"]
        where = new["path"] if new["path"] == old.get("path") else f"{new['path']} (created with {old.get('path')})"
        raise UserError(f"{change['field']}: {where} has changed since the run recorded it (sha256 "
                        f"{str(old.get('sha256'))[:12]} then, {new['sha256'][:12]} now); put it back, or resume with "
                        f"{ACCEPT_FLAG} to go on with it (recorded in the run)")
    return now, changes, recorded is None or bool(changes)


STUDY_SOURCES_META = "study_sources"  # study key -> the files that defined its re-trainings' rewards when it began


def check_study_sources(store: Store, study: str, config: Config, accept: bool = False, say=print) -> None:
    """Before re-trainings of ``study`` under ``config``: the files that define their reward (``reward_sources``: a
    user child's source, a replayed table) are the ones its first re-trainings used, else ``UserError`` naming the
    first changed file, unless ``accept`` (``ACCEPT_FLAG``; or the run itself accepted that very file on resume): a
    study never mixes seeds of two versions of a child silently. Records them where the study has none yet; an
    accepted change is recorded and said (``say``). ``store``: the run's, open for writing under its lock."""
    now = reward_sources(config)
    if not now:
        return
    studies = store.get_meta(STUDY_SOURCES_META) or {}
    changes = changed_sources(studies.get(study), now)
    run_own = store.get_meta(SOURCES_META) or {}
    if changes and not accept and not all(run_own.get(c["field"]) == c["new"] for c in changes):
        change = changes[0]
        raise UserError(f"{change['field']}: {change['new']['path']} has changed since study {study}'s first "
                        f"re-trainings (sha256 {str(change['old'].get('sha256'))[:12]} then, "
                        f"{change['new']['sha256'][:12]} now): its seeds would mix two versions of the child; put it "
                        f"back, or add {ACCEPT_FLAG} to go on with it (recorded in the run)")
    if study not in studies or changes:
        store.set_meta(STUDY_SOURCES_META, {**studies, study: now})
        for c in changes:
            say(f"{ACCEPT_FLAG}: study {study}: {c['field']} {c['new']['path']} changed (sha256 "
                f"{str(c['old'].get('sha256'))[:12]} -> {c['new']['sha256'][:12]}); its re-trainings from now on "
                f"come from the changed file")


def record_reward_sources(run_dir: Path, sources: dict, changes: list[dict], say=print) -> None:
    """Record ``sources`` as the run's files that define the reward, each accepted change (``changes``) with its time
    in the store and provenance.json and as a line in run.log (also given to ``say``). Holds the run's lock."""
    run_dir = Path(run_dir)
    accepted = [{"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **change} for change in changes]
    with run_lock(run_dir), Store.open(run_dir) as store:
        history = (store.get_meta(ACCEPTED_META) or []) + accepted
        if accepted:  # first: a crash before the next line leaves the old digests, which refuse the next resume
            store.set_meta(ACCEPTED_META, history)
        store.set_meta(SOURCES_META, sources)
        _write_run_facts(run_dir, {SOURCES_META: sources, **({ACCEPTED_META: history} if history else {})})
        lines = [f"{ACCEPT_FLAG}: {c['field']} {c['new']['path']} changed (sha256 "
                 f"{str(c['old'].get('sha256'))[:12]} -> {c['new']['sha256'][:12]}); rewards from now on come from "
                 f"the changed file" for c in accepted]
        if lines:
            with open(run_dir / LOG_FILE, "a") as log:
                log.writelines(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n" for line in lines)
            for line in lines:
                say(line)


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
        with warnings.catch_warnings():  # torch warns about a garbage file's "pickle protocol" before it fails
            warnings.simplefilter("ignore")
            return torch.load(path, weights_only=True)
    except Exception:  # an atomic write cannot leave a torn file; this is damage from outside
        raise StoreError(f"{path}: damaged, not a checkpoint torch can read; restore it from a backup or start a new "
                         f"run") from None


# ---------------------------------------------------------------- provenance

def git_commit() -> tuple[str | None, bool | None]:
    """This checkout's commit and whether tracked files differ from it; (None, None) outside a git checkout."""
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

    commit, dirty = git_commit()
    cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() \
        else []
    return {"actsearch": installed("actsearch"), "git_commit": commit, "git_dirty": dirty,
            "python": platform.python_version(), "torch": torch.__version__, "ray": installed("ray"),
            "numpy": np.__version__, "platform": platform.platform(), "host": socket.gethostname(),
            "driver_cuda_devices": cuda}


def write_provenance(run_dir: Path, session: dict) -> None:
    """Add or replace ``session`` (keyed by ``session["session"]``) in the run's provenance file; the run's own facts
    (``RUN_FACTS``) stay."""
    path = Path(run_dir) / PROVENANCE_FILE
    data = json.loads(path.read_text()) if path.exists() else {"sessions": []}
    sessions = [s for s in data.get("sessions", []) if s.get("session") != session.get("session")] + [session]
    data = {**{k: v for k, v in session.items() if k not in ("session", "started_at", "ended_at", "outcome")},
            **{k: data[k] for k in RUN_FACTS if k in data}, "sessions": sessions}
    atomic_write(path, json.dumps(data, indent=2, default=str) + "\n")


RUN_FACTS = (SOURCES_META, FOLDER_META, ACCEPTED_META)  # provenance.json's facts of the run, not of a session


def _write_run_facts(run_dir: Path, facts: dict) -> None:
    """Set ``facts`` (keys of ``RUN_FACTS``) in the run's provenance file, keeping the rest."""
    path = Path(run_dir) / PROVENANCE_FILE
    data = json.loads(path.read_text()) if path.exists() else {"sessions": []}
    atomic_write(path, json.dumps({**data, **facts}, indent=2, default=str) + "\n")
