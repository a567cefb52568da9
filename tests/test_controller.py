"""The proposer contract (ask / tell / state_dict / finished) for every kind, the synthetic task and the RewardBook."""
import io
import json
import math

import pytest
import torch

from controller import KINDS, ControllerSettings, Proposal, make_proposer
from controller.exhaustive import ExhaustiveProposer
from controller.learner import Learner, rank_advantages
from evaluator.synthetic import evaluate_synthetic, similarity, synthetic_target_problem
from search.language.errors import UserError
from search.language.expression import Expression
from search.language.index import FunctionIndex
from search.language.space import Space
from search.loop.rewards import RewardBook

SMALL = Space(1, unary=("x", "neg", "abs", "square", "sin", "relu", "sigmoid", "beta"),
              binary=("add", "mul", "max", "sigmul", "sub"))
TWO_UNITS = Space(2)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def settings(kind: str, **kw) -> ControllerSettings:
    # small batches and populations so updates and children happen within a few dozen proposals
    base = dict(kind=kind, batch_size=4, population_size=6, tournament_size=3, crossover_prob=0.5)
    base.update(kw)
    return ControllerSettings(**base)


def reward_of(space: Space, proposal: Proposal) -> float:
    """A deterministic reward: the synthetic similarity (0 for non-finite functions)."""
    value = similarity(space.decode(proposal.tokens))
    return 0.0 if value is None else value


def through_torch_save(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def describe(proposals):
    return [(p.index, p.tokens, p.logp, p.policy_version) for p in proposals]


# ---------------------------------------------------------------- the contract, every kind

@pytest.mark.parametrize("kind", KINDS)
def test_ask_gives_indexed_legal_proposals_that_survive_json(kind):
    proposer = make_proposer(settings(kind), TWO_UNITS, seed=0)
    proposals = proposer.ask(7) + proposer.ask(5)
    assert [p.index for p in proposals] == list(range(12))
    for p in proposals:
        TWO_UNITS.validate(p.tokens)  # raises on an illegal token
        assert Proposal.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert proposer.outstanding == list(range(12))
    assert proposer.ask(0) == []


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_and_calls_give_same_proposals(kind):
    runs = []
    for _ in range(2):
        proposer = make_proposer(settings(kind), TWO_UNITS, seed=3)
        seen = []
        for _ in range(4):
            batch = proposer.ask(5)
            seen += describe(batch)
            for p in reversed(batch):
                proposer.tell(p, reward_of(TWO_UNITS, p))
        runs.append(seen)
    assert runs[0] == runs[1]


@pytest.mark.parametrize("kind", ["ppo", "reinforce", "random", "evolution"])
def test_different_seeds_give_different_proposals(kind):
    a = make_proposer(settings(kind), TWO_UNITS, seed=0).ask(10)
    b = make_proposer(settings(kind), TWO_UNITS, seed=1).ask(10)
    assert [p.tokens for p in a] != [p.tokens for p in b]


@pytest.mark.parametrize("kind", KINDS)
def test_restored_proposer_continues_exactly(kind):
    """Interrupt after tells that leave a batch half full and proposals in flight; restore into a proposer made with
    another seed; both must then propose and update identically."""
    space = SMALL if kind == "exhaustive" else TWO_UNITS
    original = make_proposer(settings(kind), space, seed=5)
    in_flight = []
    for _ in range(3):  # 3 rounds of 5 asks, telling all but the newest two, out of order
        in_flight += original.ask(5)
        for p in sorted(in_flight[:-2], key=lambda p: -p.index):
            original.tell(p, reward_of(space, p))
        in_flight = in_flight[-2:]
    if kind in ("ppo", "reinforce"):
        assert original.version >= 1 and original.learner.buffer, "the snapshot must fall mid-batch"
    state = original.state_dict()

    def continue_run(proposer, pending):
        log = []
        pending = list(pending)
        for _ in range(4):
            pending += proposer.ask(6)
            log.append(describe(pending))
            for p in pending[:-1]:
                update = proposer.tell(p, reward_of(space, p))
                log.append(json.dumps(update, sort_keys=True))
            pending = pending[-1:]
        return log, proposer.version

    expected = continue_run(original, in_flight)
    # saved after the original went on: the snapshot must not have changed with the original's later learning
    restored = make_proposer(settings(kind), space, seed=99)
    restored.load_state_dict(through_torch_save(state))
    assert continue_run(restored, in_flight) == expected


@pytest.mark.parametrize("kind", KINDS)
def test_tell_refuses_what_would_count_twice_or_is_not_a_reward(kind):
    proposer = make_proposer(settings(kind), TWO_UNITS, seed=0)
    first, second = proposer.ask(2)
    proposer.tell(first, 0.5)
    with pytest.raises(ValueError, match="not outstanding"):
        proposer.tell(first, 0.5)
    with pytest.raises(ValueError, match="not outstanding"):
        proposer.tell(Proposal(17, first.tokens, first.logp), 0.5)
    with pytest.raises(ValueError, match="finite"):
        proposer.tell(second, math.nan)
    with pytest.raises(ValueError, match="other tokens"):
        proposer.tell(Proposal(second.index, first.tokens, second.logp), 0.5)
    proposer.tell(second, 0.25)
    assert proposer.outstanding == []


def test_state_of_another_kind_or_space_is_refused():
    state = make_proposer(settings("random"), TWO_UNITS, seed=0).state_dict()
    with pytest.raises(ValueError, match="proposer"):
        make_proposer(settings("evolution"), TWO_UNITS, seed=0).load_state_dict(state)
    with pytest.raises(ValueError, match="space"):
        make_proposer(settings("random"), SMALL, seed=0).load_state_dict(state)


def test_bad_settings_are_reported_by_field():
    bad = ControllerSettings(kind="bandit", lr=0.0, tournament_size=50, population_size=10, baseline_decay=1.0)
    fields = {name for name, _ in bad.problems()}
    assert fields == {"kind", "lr", "tournament_size", "baseline_decay"}
    assert ControllerSettings().problems() == []
    with pytest.raises(UserError, match="controller.kind"):
        make_proposer(bad, TWO_UNITS, seed=0)


# ---------------------------------------------------------------- the RNN policy and its learner

def test_policy_samples_only_legal_tokens_and_reaches_all_of_them():
    space = Space(3, unary=("x", "sin", "relu"), binary=("add", "max"))
    proposer = make_proposer(settings("ppo"), space, seed=0)
    proposals = proposer.ask(400)
    for p in proposals:
        space.validate(p.tokens)
    for position, legal in enumerate(space.choices):
        assert {p.tokens[position] for p in proposals} == set(legal)  # unit 2 uses x, u0 and u1; nothing else


def test_behaviour_logp_is_the_policy_probability_of_the_tokens():
    proposer = make_proposer(settings("ppo", temperature=1.7, tanh_cap=1.5), TWO_UNITS, seed=0)
    for _ in range(3):  # after updates the policy is no longer uniform
        for p in proposer.ask(4):
            proposer.tell(p, reward_of(TWO_UNITS, p))
    proposals = proposer.ask(8)
    indices = torch.tensor([TWO_UNITS.indices_from_tokens(p.tokens) for p in proposals])
    logp, entropy = proposer.policy.evaluate(indices)
    assert torch.allclose(logp, torch.tensor([p.logp for p in proposals]), atol=1e-5)
    assert (entropy > 0).all()


def test_untrained_policy_is_uniform():
    proposer = make_proposer(settings("ppo"), TWO_UNITS, seed=0)
    uniform = -math.log(TWO_UNITS.size)
    assert all(abs(p.logp - uniform) < 1e-4 for p in proposer.ask(5))


@pytest.mark.parametrize("kind", ["ppo", "reinforce"])
def test_learner_updates_once_per_batch_of_rewards(kind):
    proposer = make_proposer(settings(kind, batch_size=4), TWO_UNITS, seed=0)
    initial = [p.detach().clone() for p in proposer.policy.parameters()]
    proposals = proposer.ask(10)
    told = [proposals[i] for i in (3, 0, 7, 1, 2, 9, 8, 4)]  # out of order, as workers finish
    records = [proposer.tell(p, reward_of(TWO_UNITS, p)) for p in told]
    assert [r is not None for r in records] == [False, False, False, True] * 2
    assert records[3]["version"] == 1 and records[7]["version"] == 2
    assert records[3]["consumed"] == [3, 0, 7, 1] and records[7]["consumed"] == [2, 9, 8, 4]
    for key in ("mean_reward", "entropy", "baseline", "approx_kl", "staleness"):
        assert math.isfinite(records[3]["stats"][key])
    assert proposer.version == 2
    assert {p.policy_version for p in proposer.ask(3)} == {2}
    assert any(not torch.equal(a, b) for a, b in zip(initial, proposer.policy.parameters()))


def test_late_rewards_from_an_older_policy_are_used_with_importance_weights():
    proposer = make_proposer(settings("ppo", batch_size=4, lr=0.05), TWO_UNITS, seed=0)
    stale = proposer.ask(4)  # sampled by version 0, told after two updates
    for _ in range(2):
        for p in proposer.ask(4):
            proposer.tell(p, reward_of(TWO_UNITS, p) + 0.5 * (p.tokens[-1] == "max"))
    assert proposer.version == 2
    record = None
    for p in stale:
        record = proposer.tell(p, reward_of(TWO_UNITS, p)) or record
    assert record["consumed"] == [p.index for p in stale]
    assert record["stats"]["staleness"] == 2
    assert record["stats"]["importance_weight_max"] != pytest.approx(1.0, abs=1e-3)


def test_learning_moves_probability_towards_rewarded_tokens():
    # reward only the binary "max" in the last unit: its probability must rise well above the uniform 1/10
    proposer = make_proposer(settings("ppo", batch_size=16), TWO_UNITS, seed=0)
    for _ in range(15):
        for p in proposer.ask(16):
            proposer.tell(p, float(p.tokens[-1] == "max"))
    share = sum(p.tokens[-1] == "max" for p in proposer.ask(200)) / 200
    assert share > 0.5


def test_rank_advantages_compare_each_reward_with_history_and_the_rest_of_its_batch():
    # mid-ranks, a reward never compared with itself; scaled by sqrt(12) to unit variance
    assert rank_advantages([0.5], []) == [0.0]
    first = rank_advantages([0.1, 0.3, 0.2], [])  # first batch: ranked within itself
    assert first == pytest.approx([math.sqrt(12) * (f - 0.5) for f in (0.0, 1.0, 0.5)])
    later = rank_advantages([0.0, 0.9], [0.0, 0.5, 0.7])  # ties count half
    assert later == pytest.approx([math.sqrt(12) * (f - 0.5) for f in (0.5 / 4, 1.0)])


def _advantage_spread(settings_: ControllerSettings, zero_share: float) -> tuple[float, float]:
    """(mean within-batch standard deviation of the trained children's advantages, zeros' mean advantage) over a
    stream of batches: screened / failed candidates earn 0, trained ones an accuracy of 0.95 +- 0.01."""
    import random
    import statistics

    rng = random.Random(0)
    learner = Learner(torch.nn.Linear(1, 1), settings_)
    spreads, zeros = [], []
    for batch in range(200):
        rewards = [0.0 if rng.random() < zero_share else 0.95 + rng.gauss(0, 0.01) for _ in range(8)]
        advantages = learner.advantages(rewards)[0].tolist()
        trained = [a for a, r in zip(advantages, rewards) if r > 0]
        zeros += [a for a, r in zip(advantages, rewards) if r == 0]
        if batch >= 20 and len(trained) >= 3:
            spreads.append(statistics.pstdev(trained))
    return statistics.mean(spreads), statistics.mean(zeros) if zeros else math.nan


def test_zeros_of_screened_candidates_do_not_drown_the_differences_among_trained_children():
    # benchmarks/advantage_scale.py: with a moving mean and scale 20% zeros shrink the spread of the trained
    # children's advantages from ~0.9 to ~0.02; with the default rank advantages it stays ~0.75
    spread, zeros = _advantage_spread(ControllerSettings(), zero_share=0.2)
    assert spread > 0.5 and zeros < -1.0  # trained children told apart, zeros clearly below them
    moving_average, _ = _advantage_spread(ControllerSettings(rank_window=0), zero_share=0.2)
    assert moving_average < 0.1  # what ranks fix
    without_zeros, _ = _advantage_spread(ControllerSettings(), zero_share=0.0)
    assert without_zeros > 0.8


# ---------------------------------------------------------------- exhaustive

def test_exhaustive_proposes_every_distinct_function_of_the_one_unit_space_once():
    proposer = make_proposer(settings("exhaustive"), Space(1), seed=0)
    proposals = []
    while not proposer.finished:
        proposals += proposer.ask(500)
    assert proposer.ask(10) == []
    # FunctionIndex.distinct maps each fingerprint to its first token string in enumeration order
    expected = sorted(FunctionIndex.of(Space(1)).distinct().values(), key=lambda t: Space(1).indices_from_tokens(t))
    assert [p.tokens for p in proposals] == expected


@pytest.mark.parametrize("stops", [(1,), (37, 38, 100), (5, 60, 61, 62, 200)])
def test_exhaustive_interrupted_and_resumed_still_proposes_each_function_once(stops):
    reference = make_proposer(settings("exhaustive"), SMALL, seed=0)
    expected = reference.ask(SMALL.size)
    assert reference.finished
    fingerprints = [SMALL.decode(p.tokens).fingerprint() for p in expected]
    assert len(set(fingerprints)) == len(fingerprints)
    all_functions = {SMALL.decode(t).fingerprint() for t in SMALL.enumerate()}
    assert set(fingerprints) == all_functions

    proposer, got, asked = make_proposer(settings("exhaustive"), SMALL, seed=0), [], 0
    for stop in stops + (SMALL.size,):
        got += proposer.ask(stop - asked)
        asked = stop
        state = through_torch_save(proposer.state_dict())
        proposer = make_proposer(settings("exhaustive"), SMALL, seed=0)
        proposer.load_state_dict(state)
    assert [p.tokens for p in got] == [p.tokens for p in expected]
    assert proposer.finished


def test_exhaustive_starts_instantly_on_a_huge_space():
    proposer = ExhaustiveProposer(Space(3), seed=0)  # ~10^12 token strings: nothing is precomputed
    first = proposer.ask(3)
    assert len(first) == 3 and proposer.cursor < 10_000


# ---------------------------------------------------------------- evolution

def test_evolution_asks_before_any_reward_and_mutates_one_token():
    proposer = make_proposer(settings("evolution", crossover_prob=0.0, population_size=6), TWO_UNITS, seed=0)
    early = proposer.ask(20)  # asynchronous: no reward yet, still proposals
    assert len(early) == 20
    for p in early[:6]:
        proposer.tell(p, reward_of(TWO_UNITS, p))
    members = {p.tokens for p in early[:6]}
    for child in proposer.ask(30):
        assert min(sum(a != b for a, b in zip(child.tokens, m)) for m in members) == 1


def test_evolution_removes_the_oldest_not_the_worst():
    proposer = make_proposer(settings("evolution", population_size=4), TWO_UNITS, seed=0)
    proposals = proposer.ask(6)
    rewards = [0.9, 0.1, 0.2, 0.3, 0.4, 0.5]  # the best arrives first and must age out
    for p, r in zip(proposals, rewards):
        proposer.tell(p, r)
    assert [m[0] for m in proposer.population] == [2, 3, 4, 5]


def test_evolution_crossover_mixes_core_units_of_parents():
    space = Space(3)
    proposer = make_proposer(settings("evolution", crossover_prob=1.0, population_size=4, tournament_size=2),
                             space, seed=1)
    parents = proposer.ask(4)
    for p in parents:
        proposer.tell(p, 0.5)
    units = {(u, p.tokens[5 * u: 5 * u + 5]) for p in parents for u in range(3)}
    mixed = 0
    for child in proposer.ask(40):
        inherited = [(u, child.tokens[5 * u: 5 * u + 5]) in units for u in range(3)]
        assert sum(inherited) >= 2  # one token mutated: at most one unit differs from both parents
        donors = {p.index for p in parents for u in range(3) if p.tokens[5 * u: 5 * u + 5] == child.tokens[5 * u: 5 * u + 5]}
        mixed += len(donors) > 1
    assert mixed > 0


# ---------------------------------------------------------------- rewards for candidates that never train

def test_reward_book_screens_degenerate_functions_with_the_penalty():
    book = RewardBook(screened_reward=-1.0, reject_linear=True)
    for text in ("beta", "beta * x", "x + x", "-x", "log_abs(x - x)", "exp(exp(exp(x)))"):
        judgement = book.judge(Expression.parse(text))
        assert (judgement.status, judgement.reward) == ("screened", -1.0), text
    linear_ok = RewardBook(screened_reward=-1.0, reject_linear=False).judge(Expression.parse("beta * x"))
    assert linear_ok.status == "new"


def test_reward_book_gives_duplicates_the_recorded_reward_and_pending_while_training():
    book = RewardBook(screened_reward=0.0, reject_linear=True)
    swish = book.judge(Expression.parse("x * sigmoid(x)"))
    assert swish.status == "new" and swish.reward is None
    book.start(swish.fingerprint)
    same = book.judge(Expression.parse("sigmul(x, x)"))  # same function, other text
    assert (same.status, same.fingerprint) == ("pending", swish.fingerprint)
    book.record(swish.fingerprint, 0.75)
    assert (book.judge(Expression.parse("sigmoid(x) * x")).status,
            book.judge(Expression.parse("sigmul(x, x)")).reward) == ("duplicate", 0.75)
    other = book.judge(Expression.parse("relu(x)"))
    book.start(other.fingerprint)
    book.abandon(other.fingerprint)
    assert book.judge(Expression.parse("relu(x)")).status == "new"


# ---------------------------------------------------------------- the synthetic task

def test_synthetic_record_has_the_child_result_keys():
    record = evaluate_synthetic("x * sigmoid(x)", seed=3).to_dict()
    assert set(record) == {"status", "accuracy", "split", "train_loss", "steps", "wall_s", "images_per_s", "device",
                           "error", "activation", "seed", "fault"}
    assert record["status"] == "ok" and record["accuracy"] == pytest.approx(1.0) and record["seed"] == 3
    json.dumps(record)


def test_synthetic_similarity_gives_degenerate_functions_nothing():
    for text in ("beta", "x", "beta * x", "-x", "x + beta", "-x * sigmoid(x)", "abs(x)"):
        assert evaluate_synthetic(text).to_dict()["accuracy"] == 0.0, text
    assert evaluate_synthetic("exp(exp(exp(x)))").to_dict()["status"] == "diverged"
    ranked = [evaluate_synthetic(t).to_dict()["accuracy"]
              for t in ("relu(x)", "x * tanh(softplus(x))", "x * sigmoid(x) + x * sigmoid(x)")]
    assert 0.5 < ranked[0] < ranked[1] < ranked[2] == pytest.approx(1.0)


def test_synthetic_noise_is_seeded_per_candidate():
    a = evaluate_synthetic("relu(x)", noise=0.05, seed=1).to_dict()["accuracy"]
    assert evaluate_synthetic("relu(x)", noise=0.05, seed=1).to_dict()["accuracy"] == a
    assert evaluate_synthetic("relu(x)", noise=0.05, seed=2).to_dict()["accuracy"] != a
    others = {evaluate_synthetic(t, noise=0.05, seed=1).to_dict()["accuracy"] - evaluate_synthetic(t).to_dict()["accuracy"]
              for t in ("relu(x)", "softplus(x)", "x * tanh(x)")}
    assert len(others) == 3  # not one offset shared by every candidate of a run


def test_synthetic_bad_input_is_a_failed_record_or_a_problem_line():
    record = evaluate_synthetic("x +").to_dict()
    assert record["status"] == "failed" and "ExpressionError" in record["error"]
    assert synthetic_target_problem("x * sigmoid(x)") is None
    assert "linear" in synthetic_target_problem("beta * x + beta")
    assert evaluate_synthetic("relu(x)", target="x").to_dict()["status"] == "failed"


def test_evolution_lucky_reward_ages_out_despite_its_duplicates():
    # In a search a re-proposed function is not trained again: it is told its twin's stored reward at once. Unit 0 of
    # the lucky candidate is dead code (unit 1 reads x twice), so a mutation there gives the same function again, and
    # tournaments over the whole population always pick the lucky one while it lives: its duplicates come back often.
    # They must not keep its one lucky evaluation in the population beyond population_size tells.
    space = Space(2, unary=("x", "neg", "sigmoid", "tanh"), binary=("add", "mul"))
    size = 4
    proposer = make_proposer(settings("evolution", population_size=size, tournament_size=size, crossover_prob=0.0),
                             space, seed=0)
    stored: dict[str, float] = {}  # fingerprint -> reward, as the RewardBook keeps them
    lucky, lucky_at, late_duplicates = None, None, 0
    for tell in range(1, 301):
        (proposal,) = proposer.ask(1)
        tokens = proposal.tokens
        fingerprint = space.decode(tokens).fingerprint()
        if fingerprint not in stored:
            if lucky is None and tokens[5] == tokens[6] == "x":
                lucky, lucky_at = fingerprint, tell
                stored[fingerprint] = 0.99  # one lucky evaluation
            else:
                stored[fingerprint] = 0.1 + 0.4 * int(fingerprint[:4], 16) / 0xFFFF
        elif fingerprint == lucky and tell - lucky_at >= size:
            late_duplicates += 1
        proposer.tell(proposal, stored[fingerprint])
        in_population = [m[2] for m in proposer.population if m[2] == 0.99]
        if lucky_at is not None and tell - lucky_at >= size:
            assert not in_population, f"tell {tell}: the reward told at tell {lucky_at} is still in the population"
        assert len(proposer.population) <= size
    assert lucky_at is not None and late_duplicates > 0  # the duplicates did come back


def test_evolution_population_is_the_new_functions_of_the_last_population_size_tells():
    # every tell advances the clock; only a function rewarded for the first time joins (a duplicate only repeats an
    # earlier evaluation), and leaves population_size tells later
    space = Space(2, unary=("x", "neg", "sigmoid", "tanh"), binary=("add", "mul"))
    size = 5
    proposer = make_proposer(settings("evolution", population_size=size, tournament_size=2), space, seed=1)
    stored: dict[str, float] = {}
    log = []  # (tell, index, first evaluation of its function?)
    for tell in range(1, 201):
        (proposal,) = proposer.ask(1)
        fingerprint = space.decode(proposal.tokens).fingerprint()
        log.append((tell, proposal.index, fingerprint not in stored))
        stored.setdefault(fingerprint, int(fingerprint[:4], 16) / 0xFFFF)
        proposer.tell(proposal, stored[fingerprint])
        assert [m[0] for m in proposer.population] == [i for t, i, new in log if new and t > tell - size]
    assert 20 < sum(not new for _, _, new in log) < 180  # both kinds of tells happened
