"""The dashboard's data: what ``actsearch dashboard`` serves as JSON about the runs in a folder, read while they run.

Every read opens the run's store read-only for one short poll (``Store.open(path, readonly=True)``) and closes it:
nothing here writes, takes the run's lock or holds a transaction between polls, so a search that is writing loses
nothing to a watcher. A ``Board`` keeps what it read per run and asks the store again only from where it left off
(``Store.course(first)``); the functions' shapes are computed once per text.

A run's state comes from its sessions and its lock: running (a process holds ``run.lock``, or the last session has
not ended and its process is alive on this host), finished (the last session ended ``finished``), stopped
(interrupted, failed, or killed: a session without an end whose process is gone), new (no session yet), damaged (the
store or config cannot be read: the message says why; the other runs are served as usual).
"""
from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from search.language.errors import UserError
from search.loop.store.schema import CHILD_STATUSES, SEARCH_ENDED

SHAPE_POINTS = np.linspace(-5.0, 5.0, 81)  # x where the small multiples draw f and f'
SHAPES = 12  # best functions drawn per run
CURVE_POINTS = 400  # best-so-far points per run on the comparison plot (the course itself is sent whole)


def find_runs(paths: Iterable[str | Path], empty_ok: bool = False) -> dict[str, Path]:
    """Name -> run directory for each path that is a run, or each run directly inside a folder that holds runs
    (a results folder). ``UserError`` naming the path when a path does not exist, or (unless ``empty_ok``: a folder
    watched for runs to come) when nothing holds a run."""
    from search.loop.rundir import STORE_FILE, is_run_dir

    found: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise UserError(f"{path}: no such folder")
        if is_run_dir(path) or (path / STORE_FILE).is_file():
            found.setdefault(path.resolve().name, path)
            continue
        if not path.is_dir():
            raise UserError(f"{path}: not a run directory nor a folder of runs")
        for child in sorted(path.iterdir()):
            if child.is_dir() and (is_run_dir(child) or (child / STORE_FILE).is_file()):
                name = child.name if child.name not in found else f"{path.name}/{child.name}"
                found[name] = child
    if not found and not empty_ok:
        shown = ", ".join(str(p) for p in paths) or "."
        raise UserError(f"{shown}: no runs here (a run directory holds config.yaml and store.sqlite; start one with "
                        f"`actsearch run CONFIG --name NAME`)")
    return found


def lock_held(run_dir: Path) -> bool | None:
    """Whether a process holds ``run_dir``'s lock, read from ``/proc/locks`` (Linux) without touching the lock;
    None where that cannot be known."""
    from search.loop.rundir import LOCK_FILE

    lock = Path(run_dir) / LOCK_FILE
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    try:
        inode = lock.stat().st_ino
    except FileNotFoundError:
        return False  # never locked
    except OSError:
        return None
    return any(line.split()[5].rsplit(":", 1)[-1] == str(inode) for line in text.splitlines()
               if len(line.split()) > 5)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process
    return True


def run_state(sessions: list[dict], held: bool | None) -> str:
    """running / finished / stopped / new, from the run's sessions and whether its lock is held."""
    if held:
        return "running"
    if not sessions:
        return "new"
    last = sessions[-1]
    if last.get("ended_at") is None:
        here = last.get("host") == socket.gethostname()
        return "running" if held is None and here and _alive(last.get("pid")) else "stopped"
    return "finished" if last.get("outcome") in SEARCH_ENDED else "stopped"


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def shape(text: str) -> dict:
    """f and f' of a function on ``SHAPE_POINTS`` (betas at 1), non-finite values as None."""
    from search.analysis.plots import function_curves

    y, dy = function_curves(text, SHAPE_POINTS)
    rounded = lambda a: [_finite(round(float(v), 5)) if np.isfinite(v) else None for v in a]  # noqa: E731
    return {"x": SHAPE_POINTS.round(4).tolist(), "f": rounded(y), "df": rounded(dy)}


def _thin(points: list, n: int) -> list:
    """At most ``n`` of ``points``, evenly spaced, the last one kept."""
    if len(points) <= n:
        return points
    step = len(points) / n
    return [points[int(i * step)] for i in range(n - 1)] + [points[-1]]


@dataclass
class _Watched:
    """What a ``Board`` has read of one run."""

    path: Path
    identity: tuple = ()  # the store's first session: another run made in the same folder starts over
    budget: int | None = None
    task: str = ""
    rewards: Any = None  # the run's RewardSettings: a minimised metric is shown as itself, not as its negated reward
    rungs: tuple = ()  # fidelity.rungs: the steps of each rung
    session: dict = field(default_factory=dict)  # the last session (its start and end give the rate)
    course: list = field(default_factory=list)  # (index, status, reward, finished_at) of final candidates
    first_open: int = 0  # candidates before this index all have their results in ``course``
    version: tuple = ()  # the store's at the last full read: journal event, sessions, studies (studies_version)
    detail: dict = field(default_factory=dict)  # the rest of the last full read
    shapes: dict = field(default_factory=dict)  # text -> shape

    def shown(self, reward: float | None) -> float | None:
        """A reward as the run's metric (val_bpc 4.18, not reward -4.18); accuracy as it is."""
        return _finite(self.rewards.metric_of(reward) if self.rewards is not None and reward is not None else reward)


class Board:
    """The runs of a dashboard, read on demand: ``runs()`` (every run's summary and best-so-far curve) and
    ``run(name)`` (one run's course, entropy, rungs, best shapes and significance)."""

    def __init__(self, runs: dict[str, Path], folders: Iterable[str | Path] = ()):
        self.watched = {name: _Watched(path) for name, path in runs.items()}
        self.folders = list(folders)  # looked at again on every poll: a run started later appears, a removed one goes

    def runs(self) -> list[dict]:
        found = {}
        try:
            found = find_runs(self.folders, empty_ok=True) if self.folders else {}
            for name, path in found.items():
                self.watched.setdefault(name, _Watched(path))
        except UserError:
            pass  # a folder gone meanwhile: its runs stay as they were
        for name in [n for n, w in self.watched.items() if n not in found and not w.path.exists()]:
            del self.watched[name]  # a run removed
        out = []
        for name, w in self.watched.items():
            try:
                self._read(w)
                out.append(self._summary(name, w))
            except Exception as exc:  # noqa: BLE001  a damaged run is shown as damaged; the others go on
                out.append({"name": name, "state": "damaged", "error": " ".join(str(exc).split())[:300]})
        return out

    def run(self, name: str) -> dict:
        w = self.watched.get(name)
        if w is None:
            raise KeyError(name)
        try:
            self._read(w)
        except Exception as exc:  # noqa: BLE001
            return {"name": name, "state": "damaged", "error": " ".join(str(exc).split())[:300]}
        best = -math.inf
        course = []
        for index, status, reward, _ in w.course:
            r = _finite(reward)
            if status not in CHILD_STATUSES:
                continue  # screened and duplicate candidates train no child
            if status == "ok":  # a child stopped at a rung has a part-trained score: not a best so far
                best = max(best, r) if r is not None else best
            course.append([index, w.shown(r), status, w.shown(best) if best > -math.inf else None])
        return {**self._summary(name, w), "course": course, **w.detail}

    # ------------------------------------------------------------ reading a store

    def _read(self, w: _Watched) -> None:
        from search.loop.rundir import run_config
        from search.loop.store import Store
        from search.loop.store.schema import OPEN_STATUSES

        with Store.open(w.path, readonly=True) as store:
            sessions = store.sessions()
            identity = tuple((sessions[0].get("started_at"), sessions[0].get("pid"))) if sessions else ()
            if identity != w.identity:  # the folder holds another run than the one read before (or its first session)
                fresh_watch = _Watched(w.path, identity)
                w.__dict__.update(fresh_watch.__dict__)
            w.session = sessions[-1] if sessions else {}
            w.detail["state"] = run_state(sessions, lock_held(w.path))
            retrainings, analysis = store.studies_version()
            version = (store.last_event_seq(), len(sessions), retrainings, analysis)
            if version == w.version and w.budget is not None:
                return
            config = run_config(w.path, store)  # again on each change: a resume may have raised the budget
            w.budget, w.rewards, w.rungs = config.budget.children, config.rewards, tuple(config.fidelity.rungs)
            w.task = config.child.task
            fresh = store.course(w.first_open)
            w.course = [c for c in w.course if c[0] < w.first_open] + [c for c in fresh if c[1] not in OPEN_STATUSES]
            pending = [c[0] for c in fresh if c[1] in OPEN_STATUSES]
            w.first_open = pending[0] if pending else (fresh[-1][0] + 1 if fresh else w.first_open)
            w.course.sort()
            w.detail.update(self._details(store, w), sessions=len(sessions),
                            running=sum(1 for c in fresh if c[1] == "running"),  # submitted to a worker
                            proposals=store.proposals(), done=store.evaluated(), retrainings=retrainings)
            w.version = version

    def _details(self, store, w: _Watched) -> dict:
        from search.analysis.formatting import display_parts
        from search.language.simplify import typeset_html

        entropy = [[max(u["consumed"]) if u.get("consumed") else u["version"], _finite(u["stats"].get("entropy"))]
                   for u in store.updates()]
        top = store.top(SHAPES)
        known = store.texts_by_fingerprint(r["fingerprint"] for r in top)
        shapes = []
        for r in top:
            simplest, equals = display_parts(r["text"], known.get(r["fingerprint"], ()))
            if r["text"] not in w.shapes:
                w.shapes[r["text"]] = shape(r["text"])
            retrained = [{"study": t["study"], "seed": t["seed_number"], "score": w.shown(t["score"])}
                         for t in store.retrainings(activations=[r["text"]])]  # by study: each its own child
            stopped_at = (r.get("metrics") or {}).get("rung_step") if r["status"] == "stopped" else None
            shapes.append({"rank": r["rank"], "index": r["index"], "text": r["text"], "readable": simplest,
                           "equals": equals, "typeset": typeset_html(simplest), "reward": w.shown(r["reward"]),
                           "status": r["status"], "stopped_at": stopped_at,
                           "seed": r["seed"], "retrained": retrained, **w.shapes[r["text"]]})
        steps = store.child_steps()
        return {"entropy": [e for e in entropy if e[1] is not None], "shapes": shapes,
                "rungs": {"children": steps["children"], "stopped": {str(k): v for k, v in steps["stopped"].items()},
                          "steps": list(w.rungs)},
                "significance": self._significance(store, w.rewards)}

    @staticmethod
    def _significance(store, rewards=None) -> list[dict]:
        from search.analysis.formatting import display_parts
        from search.analysis.significance import metric_comparisons
        from search.language.simplify import typeset_html

        out = []
        for study in store.significance():
            rows = []
            for c in metric_comparisons(study["comparisons"], rewards):  # in the metric: candidate minus baseline
                shown, equals = display_parts(c.get("candidate", ""))
                try:
                    typeset = typeset_html(shown)
                except Exception:  # noqa: BLE001  a baseline's name
                    typeset = shown
                rows.append({"candidate": shown, "equals": equals, "typeset": typeset,
                             "baseline": c.get("baseline"), "mean": _finite(c.get("mean_diff")),
                             "low": _finite(c.get("ci_low")), "high": _finite(c.get("ci_high")),
                             "verdict": c.get("verdict") or "no evidence", "p": _finite(c.get("wilcoxon_p_holm")),
                             "n": c.get("n"), "metric": c.get("metric"), "lower": bool(c.get("lower_is_better"))})
            out.append({"study": study["study"], "overrides": study["overrides"], "seeds": study["seeds"],
                        "split": study["child"].get("split"), "confirmation": study["confirmation"],
                        "comparisons": rows})
        return out

    def _summary(self, name: str, w: _Watched) -> dict:
        done = w.detail.get("done", 0)
        best, curve = None, []
        for index, status, reward, _ in w.course:
            r = _finite(reward)
            if status == "ok" and r is not None and (best is None or r > best):  # trained to the end
                best = r
                curve.append([index, r])
        if w.course and curve:
            curve.append([w.course[-1][0], best])
        finished = sorted(c[3] for c in w.course if c[3] is not None and c[1] in CHILD_STATUSES)  # children only
        state = w.detail.get("state", "new")
        retrainings = w.detail.get("retrainings", 0)
        if state == "new" and retrainings:  # no search session, only re-trainings (a table of named functions)
            state = "re-trained"
        if state == "running" and (not w.session or w.session.get("ended_at") is not None):
            state = "re-training"  # the lock is held, but by no search session: a significance test or a table
        elif state == "running" and w.budget and done >= w.budget:
            state = "confirming"  # the search's budget is spent and its session goes on: the confirm stage
        # the rate of the last session: its children over its time so far (or in all, once it ended); the spread of
        # finishing times would count a pause between sessions, and a batch recorded at once as no time at all
        started, ended = w.session.get("started_at"), w.session.get("ended_at")
        now = time.time()
        until = ended if ended is not None else (now if state == "running" else (finished[-1] if finished else None))
        this_session = sum(1 for t in finished if started is not None and t >= started)
        per_minute = this_session * 60 / (until - started) \
            if this_session and started is not None and until is not None and until > started else None
        left = max((w.budget or 0) - done, 0)
        eta = left * 60 / per_minute if per_minute and state == "running" and left else None
        shapes = w.detail.get("shapes") or []
        top = next((f for f in shapes if f["status"] == "ok"), shapes[0] if shapes else None)
        from search.analysis.formatting import shows_metric

        lower = bool(w.rewards is not None and w.rewards.minimize)
        return {"name": name, "path": str(w.path), "state": state, "done": done, "budget": w.budget,
                "proposals": w.detail.get("proposals", 0), "running": w.detail.get("running", 0),
                "retrainings": retrainings,
                "best": top and {k: top[k] for k in ("readable", "equals", "typeset", "reward")},
                "per_minute": per_minute, "eta_s": eta,
                "curve": _thin([[i, w.shown(r)] for i, r in curve], CURVE_POINTS),
                "metric": w.rewards.metric if shows_metric(w.rewards) else "reward", "lower": lower, "task": w.task,
                "last_at": finished[-1] if finished else None, "now": now}
