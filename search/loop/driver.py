"""The search loop: a controller proposes candidates, Ray workers train children, the run store records everything.

One candidate's trip, in the order of this file: **restore** (a resumed driver loads the checkpoint and replays the
journal after it) -> **ask** (the proposer's ``ask`` returns a ``Proposal``; the driver decodes its token string into an
expression and asks the ``RewardBook``: a screened or already-evaluated function gets its reward at once, a function
being trained right now waits for that child, a new one is queued) -> **dispatch** (when the pool has room, a Ray
worker trains the child from the expression text, the child settings and the seed ``child_seed(run seed, index)``) ->
**collect** (the result record comes back) -> **record** (its reward is written to the store) -> **tell** (the reward
goes to the proposer) -> **update** (when the proposer's learner updates, the update is recorded) -> **checkpoint**
(the proposer's whole state, atomically).

Exactly once, across any crash. The store journals every ``ask`` call and every reward delivery (``tell``) in the
order they happened; the checkpoint names the last journal event it includes. A resumed driver loads the checkpoint
and replays the journal after it (the proposer is deterministic, so a replayed ``ask`` returns the very proposals the
store holds, which is checked), so each reward reaches the controller once. A result is written in the same
transaction as its ``tell`` event, so a result is either recorded and delivered, or neither. Children that were
running when the driver died have no result: they are dispatched again, with the same seed.
"""
from __future__ import annotations

import collections
from pathlib import Path

from controller import Proposal, make_proposer
from evaluator.activations import display_text
from evaluator.result import ChildResult
from evaluator.result import reward as child_reward
from search.loop.config import Config, child_seed
from search.loop.fidelity import RungBoard, RungDecision, count_child, early_stopping_text
from search.loop.progress import Progress
from search.loop.rewards import STALL_PROPOSALS, RewardBook
from search.loop.rundir import (
    checkpoint_path,
    read_checkpoint,
    write_checkpoint,
)
from search.loop.schedule import Schedule
from search.loop.store import Store, StoreError

CHECKPOINT_EVERY_EVENTS = 500  # also checkpoint proposers that never update, so a resume replays little


class Driver:
    """A search, as the engine's work (``search.loop.engine``): one session on one run store. Single-threaded; the only
    writer of the store.

    ``run_dir`` is None for a search kept in memory (``search.loop.local``: no checkpoints). ``proposer``: the
    proposer to drive (default: the one ``config.controller`` names, seeded with ``config.seed``).
    """

    noun = "children"

    def __init__(self, run_dir: Path | None, config: Config, store: Store, progress: Progress, proposer=None):
        self.run_dir, self.config, self.store, self.progress = run_dir, config, store, progress
        self.space = config.space.build()
        self.proposer = proposer if proposer is not None else make_proposer(config.controller, self.space,
                                                                            config.seed)
        self.book = RewardBook(config.rewards.screened, config.rewards.reject_linear)
        self.checkpoint_path = checkpoint_path(run_dir) if run_dir is not None else None
        self.budget = config.budget.children
        self.proposal_limit = config.budget.proposal_limit
        f = config.fidelity  # early stopping: the engine's executor asks this board whether a child goes on
        self.board = RungBoard(f.rungs, f.eta, config.rewards.metric, config.rewards.minimize, f.stop,
                               ordered=config.schedule.mode == "deterministic") if f.rungs else None

        self.open: dict[int, Proposal] = {}  # asked, reward not yet told
        self.texts: dict[int, str] = {}
        self.fps: dict[int, str] = {}
        self.ready: collections.deque[int] = collections.deque()  # judged new, waiting for a worker slot
        self.waiting: dict[str, list[int]] = {}  # fingerprint -> candidates waiting for the child of that function
        self.active: dict[str, int] = {}  # fingerprint -> the candidate whose child is queued or running
        self.first_child: dict[str, int] = {}  # fingerprint -> the candidate whose child gave the function's reward

        self.evaluated = store.evaluated()
        self.proposed = store.proposals()
        self.last_seq = 0  # journal events the proposer has seen
        self.checkpoint_seq = 0
        self.ask_blocked = False  # the proposer returned nothing; ask again after the next tell
        self.schedule = Schedule(config, self.open)  # when to ask, and in which order rewards are told
        self.since_new = 0  # proposals in a row judged screened, duplicate or pending (this session)
        self.session_children = 0
        self.penalty_said = False  # the warning that a trained child scored below the penalties, once a session
        self.best = store.best()
        if self.best is not None:  # shown as every display shows it (the top table); the store keeps the canonical text
            self.best = {**self.best, "text": display_text(self.best["text"])}
        self.child_steps = store.child_steps() if self.board is not None else None  # kept up to date per child

    def on_probation(self) -> bool:
        """Whether no child of this run has trained yet (the setup has not proven itself)."""
        return not any(self.store.counts()[s] for s in ("ok", "diverged", "timeout", "stopped"))

    # ------------------------------------------------------------ restore

    def restore(self) -> int:
        """Load the checkpoint, replay the journal after it, rebuild the reward book and re-judge open candidates.

        Returns the number of journal events replayed. Raises ``StoreError`` if the proposer does not repeat itself.
        """
        checkpoint = read_checkpoint(self.checkpoint_path) if self.checkpoint_path is not None else None
        if checkpoint is not None:
            try:
                self.proposer.load_state_dict(checkpoint["proposer"])
                self.last_seq = self.checkpoint_seq = int(checkpoint["event_seq"])
            except (KeyError, TypeError, ValueError) as exc:
                raise StoreError(f"{self.checkpoint_path}: not a checkpoint of this run's controller "
                                 f"({str(exc).splitlines()[0][:120]})") from None
            if self.last_seq > self.store.last_event_seq():
                raise StoreError(f"{self.checkpoint_path} is ahead of the store (event {self.last_seq})")
        events = self.store.events_after(self.last_seq)
        for event in events:
            self._replay(event)
        if self.board is not None:
            self.board.load([RungDecision(r["candidate"], r["rung"], r["step"], r["score"], r["go_on"])
                             for r in self.store.rungs()])
        for fingerprint, (reward, index) in self.store.rewards_by_fingerprint().items():
            self.book.record(fingerprint, reward)
            self.first_child[fingerprint] = index
        rows = self.store.open_candidates()
        for row in rows:
            self.open.setdefault(row["index"], Proposal.from_dict(row["proposal"]))
            self.texts[row["index"]], self.fps[row["index"]] = row["text"], row["fingerprint"]
        if sorted(self.open) != self.proposer.outstanding:
            raise StoreError(f"the controller's outstanding proposals {self.proposer.outstanding[:10]} differ from "
                             f"the store's open candidates {sorted(self.open)[:10]}")
        if self.proposer.version != self.store.update_count():
            raise StoreError(f"the controller has made {self.proposer.version} updates, the store records "
                             f"{self.store.update_count()}")
        self.schedule.restore([(e["first_index"], e["count"]) for e in self.store.events_after(0)
                               if e["kind"] == "ask"])
        for row in rows:
            self._route(row["index"], self._judge(row["index"]))
        return len(events)

    def _replay(self, event: dict) -> None:
        if event["kind"] == "ask":
            proposals = self.proposer.ask(event["n"])
            stored = self.store.candidates(first=event["first_index"] or 0, limit=event["count"]) \
                if event["count"] else []
            got = [(p.index, tuple(p.tokens)) for p in proposals]
            want = [(c["index"], c["tokens"]) for c in stored]
            if got != want:
                raise StoreError(f"replaying journal event {event['seq']}: the controller proposed {got[:3]}, the "
                                 f"store holds {want[:3]}; the controller is not deterministic")
            for p in proposals:
                self.open[p.index] = p
        else:
            row = self.store.candidate(event["candidate"])
            proposal = self.open.pop(row["index"], None) or Proposal.from_dict(row["proposal"])
            update = self.proposer.tell(proposal, row["reward"])
            self.last_seq = event["seq"]
            if update:
                self._record_update(update)
        self.last_seq = event["seq"]

    def remaining_work(self) -> bool:
        """Whether a session has anything to do (False for a finished run: resuming it is a no-op)."""
        if self.evaluated >= self.budget:
            return False
        if self.open:
            return True
        return not self.proposer.finished and self.proposed < self.proposal_limit

    # ------------------------------------------------------------ the engine's questions

    def finished(self, in_flight: int) -> str | None:
        if self.evaluated + self.schedule.waiting_children >= self.budget and not in_flight:
            self.schedule.drain()
            return "finished"
        if self.since_new >= STALL_PROPOSALS and not in_flight and not self.ready:
            return "stalled"
        return None

    def idle(self) -> str:
        """Nothing in flight or queued and nothing asked: why the search ends."""
        self.schedule.drain()
        if self.proposer.finished:
            return "exhausted"
        if self.proposed >= self.proposal_limit:
            return "proposal-limit"
        raise RuntimeError("the controller proposes nothing while no child is in flight")

    def room(self, committed: int, free: int) -> int:
        """How many candidates to ask now (``free``: workers without a child): the schedule's batch or free workers,
        while the budget still allows children beyond those trained and committed."""
        left = self.budget - self.evaluated - self.schedule.waiting_children - committed
        if self.ask_blocked or self.proposer.finished or left <= 0 or self.proposed >= self.proposal_limit:
            self.schedule.close()  # nothing more will be asked (for now): the rewards waiting may be told
            return 0
        # ``left`` counts the children of every function judged new so far: at a deterministic ask it is the same
        # whatever the workers did, so the last batch is cut to it and no proposal is left without a reward
        return min(self.schedule.room(free), left, self.proposal_limit - self.proposed)

    def may_launch(self, committed: int) -> bool:
        return self.evaluated + self.schedule.waiting_children + committed < self.budget

    def record_rungs(self, decisions: list[RungDecision]) -> None:
        """Keep early stopping's decisions (they survive a crash: a resume answers a child the same)."""
        self.store.record_rungs(decisions)

    def tick(self) -> None:
        if self.last_seq - self.checkpoint_seq >= CHECKPOINT_EVERY_EVENTS:
            self.checkpoint()

    def status_parts(self) -> tuple[int, int, int, str]:
        rewards = self.config.rewards
        score = (f"{rewards.metric} {rewards.metric_of(self.best['reward']):.4f}" if self.best and rewards.minimize
                 else f"{self.best['reward']:.4f}" if self.best else "")
        best = f"best {score} {self.best['text']}" if self.best else "best -"
        text = early_stopping_text(self.child_steps, self.config) if self.board is not None else ""
        stopped = f" | {text}" if text else ""
        return self.evaluated, self.budget, self.session_children, f"{self.proposed} proposed{stopped} | {best}"

    # ------------------------------------------------------------ ask, judge, route

    def _judge(self, index: int):
        """The judgement of an open candidate, by the fingerprint the store holds (never computed again)."""
        return self.book.judge(self.space.decode(self.open[index].tokens), self.fps[index])

    def ask(self, room: int) -> bool:
        """Ask the proposer for ``room`` candidates, journal and route them; True if it proposed any."""
        proposals = self.proposer.ask(room)
        judged = []
        for p in proposals:
            expr = self.space.decode(p.tokens)
            judgement = self.book.judge(expr, p.fingerprint)  # a proposer that knows it saves computing it
            if judgement.status == "new":  # so a twin later in this batch waits instead of training again
                self.book.start(judgement.fingerprint)
                self.active[judgement.fingerprint] = p.index
                self.since_new = 0
            else:
                self.since_new += 1
            judged.append((p, expr, judgement))
        self.last_seq = self.store.record_ask(room, [
            {"index": p.index, "tokens": p.tokens, "text": expr.text, "fingerprint": j.fingerprint, "logp": p.logp,
             "policy_version": p.policy_version, "proposal": p.to_dict()} for p, expr, j in judged])
        self.proposed += len(proposals)
        self.ask_blocked = not proposals
        for p, expr, judgement in judged:
            self.open[p.index] = p
            self.texts[p.index], self.fps[p.index] = expr.text, judgement.fingerprint
            self._route(p.index, judgement, started=True)
        self.schedule.asked([p.index for p in proposals])  # after routing: it may tell rewards the batch waits for
        return bool(proposals)

    def _route(self, index: int, judgement, started: bool = False) -> None:
        """Act on a judgement: reward at once (screened, duplicate), wait for a twin (pending) or queue a child."""
        fp = judgement.fingerprint
        if judgement.status == "screened":
            self._record_free(index, "screened", judgement.reward, judgement.reason)
        elif judgement.status == "duplicate":
            self._record_free(index, "duplicate", judgement.reward, f"same function as candidate "
                              f"{self.first_child.get(fp)}", duplicate_of=self.first_child.get(fp))
        elif judgement.status == "pending":
            self.waiting.setdefault(fp, []).append(index)
            self.store.record_pending(index, f"waits for the child of candidate {self.active.get(fp)}")
        else:
            if not started:
                self.book.start(fp)
                self.active[fp] = index
            self.ready.append(index)

    # ------------------------------------------------------------ launch, record, tell

    def launch(self, index: int) -> tuple[str, int, str]:
        seed = child_seed(self.config.seed, index)
        self.store.record_launch(index, seed)
        return self.texts[index], seed, f"child-{index}"

    def requeued(self, index: int, result: ChildResult, attempt: int, retries: int) -> None:
        self.progress.event(f"#{index} {result.status} for the system's reasons ({result.error}); "
                            f"queued again ({attempt} of {retries})", show=False)

    def abandon(self, index: int) -> None:
        self.book.abandon(self.fps[index])

    def record(self, index: int, result: ChildResult) -> None:
        """A child's final result: write its reward, tell it, and settle the candidates waiting for it (when the
        schedule says it is its turn)."""
        self.schedule.settle(index, lambda: self._record_child(index, result), child=True)

    def _record_child(self, index: int, result: ChildResult) -> None:
        fp = self.fps[index]
        system = result.system_failure
        status, reward, result = child_reward(result, self.config.rewards)
        if result.traceback:  # the user's child raised: the whole traceback goes to run.log, its last line to the store
            self.progress.event(f"#{index} {self.texts[index]} raised:\n{result.traceback.rstrip()}", show=False)
        record = result.to_dict()
        seq = self.store.record_result(index, status, reward, metrics=record, reason=result.error,
                                       node=result.extra.get("node"))
        self.evaluated += 1
        self.session_children += 1
        if self.board is not None:
            count_child(self.child_steps, status, record)
        self.active.pop(fp, None)
        if system:  # the candidate is told the penalty, but the function keeps no reward: a twin trains anew
            self.book.abandon(fp)
        else:
            self.book.record(fp, reward)
            self.first_child[fp] = index
        rewards = self.config.rewards
        if status == "ok" and reward < min(rewards.failed, rewards.screened) and not self.penalty_said:
            self.penalty_said = True  # once a session: the ranking puts every failed child above this one
            self.progress.event(f"warning: #{index}'s {rewards.metric} {rewards.metric_of(reward):.4g} is worse than "
                                f"the penalties (rewards.failed {rewards.failed:g}, screened {rewards.screened:g}): "
                                f"failed and screened candidates now rank above it; set them below the worst "
                                f"{rewards.metric} a child can score", show=True)
        # a best is a child trained in full: not a penalty, nor a part-trained score at a rung
        if status == "ok" and (self.best is None or reward > self.best["reward"]):
            self.best = {"reward": reward, "text": display_text(self.texts[index]), "index": index}
            value = rewards.metric_of(reward)
            shown = f"{value:.4f}" if abs(value) < 1e6 else f"{value:.4g}"
            named = f"{rewards.metric} {shown}" if rewards.minimize or rewards.metric != "accuracy" else shown
            self.progress.event(f"new best  #{index}  {named}  {self.best['text']}", show=True)
        error = f", {result.error}" if result.error else ""
        self.progress.event(f"#{index} {status} reward={reward:.4f} {self.texts[index]} (seed {result.seed}, "
                            f"{result.wall_s or 0:.1f} s{error})", show=False)
        self._tell(index, reward, seq)
        for twin in self.waiting.pop(fp, []):
            if system:
                self._route(twin, self._judge(twin))
            else:
                self._record_free(twin, "duplicate", reward, f"same function as candidate {index}",
                                  duplicate_of=index)

    def _record_free(self, index: int, status: str, reward: float, reason: str,
                     duplicate_of: int | None = None) -> None:
        """Record a reward that needed no child (screened, duplicate) and tell it (when it is its turn)."""
        self.schedule.settle(index, lambda: self._record_free_now(index, status, reward, reason, duplicate_of),
                             child=False)

    def _record_free_now(self, index: int, status: str, reward: float, reason: str, duplicate_of: int | None) -> None:
        seq = self.store.record_result(index, status, reward, reason=reason, duplicate_of=duplicate_of)
        self.progress.event(f"#{index} {status} reward={reward:.4f} {self.texts[index]} ({reason})", show=False)
        self._tell(index, reward, seq)

    def _tell(self, index: int, reward: float, seq: int) -> None:
        update = self.proposer.tell(self.open.pop(index), reward)
        self.last_seq = seq
        self.ask_blocked = False
        if update:
            self._record_update(update)
            stats = update.get("stats", {})
            shown = ", ".join(f"{k} {v:.4g}" for k, v in stats.items() if isinstance(v, (int, float)))
            self.progress.event(f"controller update {update['version']}: {shown}", show=False)

    # ------------------------------------------------------------ update and checkpoint

    def _record_update(self, update: dict) -> None:
        self.store.record_update(int(update["version"]), self.last_seq, update["consumed"], update.get("stats", {}))
        self.checkpoint()

    def checkpoint(self) -> None:
        """Write the proposer's state as of journal event ``last_seq`` (atomic); nothing for a search in memory."""
        if self.checkpoint_path is None:
            return
        write_checkpoint(self.checkpoint_path, {"format": 1, "event_seq": self.last_seq,
                                                "version": self.proposer.version,
                                                "proposer": self.proposer.state_dict()})
        self.checkpoint_seq = self.last_seq
