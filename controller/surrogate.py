"""Surrogate-guided search: a Gaussian process predicts each candidate's reward from its shape; the next candidates
are those with the highest upper confidence bound, a batch at a time.

Features (``shape_features``). A candidate is described by its shape at beta = 1 (where training starts) on
``FEATURE_POINTS``, 64 of the probe points (``search.language.identity.PROBE_POINTS``) spread as those are: dense
near 0, where most pre-activations fall, and reaching -5 and 5. The vector is the values minus their mean followed by
the secant slopes between neighbouring points, scaled to unit length: blind to the offset and the (positive) scale
that the next layer absorbs, not to a sign flip. A function that is not finite at a point, or constant, has no
features and is never proposed. Only the shape is used (no statistics of a child network).

Pool. The candidates the acquisition chooses from:

- An enumerable space (``search.language.index.ENUMERATION_LIMIT`` token strings at most; the one-unit space has
  6,250) is enumerated once per process: one token string per distinct function (``FunctionIndex.distinct``: the
  first in ``space.enumerate()`` order, as ``exhaustive`` proposes it), minus the functions ``Expression.screen`` rejects (linear ones included: a linear
  activation makes the network linear). The one-unit space leaves 3,958 functions. ``finished`` once all of them
  were proposed.
- A larger space is sampled: every ask adds ``REFRESH`` new functions to the pool, half uniformly random token
  strings, half one-token mutations of the ``PARENTS`` best functions rewarded so far (all random while nothing is
  rewarded); the pool keeps the ``surrogate_pool`` latest. Random strings keep the pool spread over the space, the
  mutations put good functions' neighbours within reach (as in BANANAS, White et al. 2021). A function that is not
  finite at the feature points, constant or linear there, does not join (the screen's beta = 1 part, on fewer points;
  the few it lets through earn the screening penalty like any proposal), nor one with the features of a member.
  Fingerprints (~0.5 ms each, twice the features' cost) are computed only for the members picked: one whose function
  was proposed already (by another token string) is dropped instead of proposed. An ask that finds no new function
  while no proposal is in flight leaves the proposer ``finished`` (a space of few distinct functions is spent).

Model. A Gaussian process (scikit-learn's ``GaussianProcessRegressor``) on the features, kernel ``C * Matern(nu=2.5)
+ White``, its three hyperparameters fitted by maximum marginal likelihood (deterministic: L-BFGS from fixed starting
values, no random restarts) on every refit up to ``HYPER_FIT`` rewards, beyond that on an even spread of ``HYPER_FIT``
of them once ``HYPER_EVERY`` new rewards came. The process is conditioned on at most ``FIT_LIMIT`` rewards: the best
half and an even spread of the rest. Rewards enter as normal scores of their ranks among all rewards (ties share a
rank): a screening penalty of 0 among accuracies near 0.9 would otherwise squash every difference that matters. A function is
rewarded once (nothing is proposed twice), and the rewards are fitted in proposal order, so the order of the tells
does not matter. The fit is redone lazily, at the first ask after new rewards, on one BLAS thread.

Acquisition. The first ``surrogate_initial`` proposals are uniformly random (distinct functions: pool members, or in a
sampled space random token strings that could join the pool), and so is any proposal while all rewards so far are
equal (they say nothing a model could use). After that, ``ask(n)`` picks n functions one at a time, each the pool
member with the highest ``mean + surrogate_kappa * sd`` (upper confidence bound, in units of the normal scores:
kappa 0 exploits, larger explores). Before the first pick for every proposal asked but not yet rewarded, and after
each pick for that one, the process is conditioned on the function's reward being its predicted mean ("kriging
believer"): the mean stays, the sd near it shrinks, so a batch spreads out and many workers are kept busy without
crowding one neighbourhood.

Cost per ask (n rewards, f = min(n, ``FIT_LIMIT``), m pool members, p proposals in flight): the hyperparameter fit
O(min(n, ``HYPER_FIT``)^3) per likelihood evaluation, conditioning O(f^3), scoring O(f^2 m), O((m + p)(f + p)) per
pick; a sampled pool also featurises ``REFRESH`` new functions (~0.3 ms each). Measured: benchmarks/surrogate_cost.py
(ask after a tell, two-unit space, one thread: 0.34 / 1.9 s at 1,000 / 3,000 rewards before the bounds). ``tell``
only records the reward.

State: the proposed fingerprints, the rewards with their token strings, the last hyperparameters and the reward count
they were fitted at, the random-number state and a sampled pool's token strings. Features are recomputed from token strings (deterministic), so a restored proposer proposes exactly
what the original would.
"""
from __future__ import annotations

import heapq
import math
import random
import warnings
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from controller.base import Proposal, Proposer
from controller.evolution import mutate
from controller.random_search import rng_state, sample_tokens, set_rng_state
from search.language.expression import Expression
from search.language.identity import PROBE_POINTS
from search.language.index import FunctionIndex
from search.language.space import Space, tokens_to_node

REFRESH = 256  # new functions added to a sampled pool per ask
PARENTS = 8  # a sampled pool's mutations are of this many best rewarded functions
# Rewards the hyperparameters are fitted to, at most (an even spread in proposal order): each likelihood evaluation
# costs O(n^3), and at 1,000 rewards fitting on all took 1.7 s per ask instead of 0.1.
HYPER_FIT = 256
# Beyond HYPER_FIT rewards the hyperparameters change slowly: they are refitted once this many new rewards came.
HYPER_EVERY = 64
# Rewards the process is conditioned on, at most: the best half of them and an even spread (in proposal order) of the
# rest. Conditioning and scoring cost O(n^3) and O(n^2 m): on all 3,000 rewards an ask took 1.9 s.
FIT_LIMIT = 500
RANDOM_TRIES = 1000  # draws for a random proposal in a sampled space before settling for a degenerate one


def _feature_points(count: int = 64) -> np.ndarray:
    points = np.unique(PROBE_POINTS)  # sorted; the clipped draws repeat -5 and 5
    return points[np.linspace(0, len(points) - 1, count).round().astype(int)]


FEATURE_POINTS = _feature_points()


# ---------------------------------------------------------------- features

def shape_features(expr: Expression) -> np.ndarray | None:
    """Unit vector of centred values and secant slopes at beta = 1 on ``FEATURE_POINTS`` (float64, length 127);
    None when the function is not finite there or constant."""
    with torch.no_grad():
        y = expr(torch.tensor(FEATURE_POINTS, dtype=torch.float64), 1.0).numpy()
    if not np.isfinite(y).all():
        return None
    top = np.abs(y).max()
    if top == 0:
        return None
    y = y / top  # first, so nothing below overflows
    joint = np.concatenate([y - y.mean(), np.diff(y) / np.diff(FEATURE_POINTS)])
    size = np.linalg.norm(joint)
    if not size > 1e-9:
        return None
    return joint / size


def usable(features: np.ndarray | None) -> bool:
    """Whether a sampled function may join the pool: it has features and they are not a straight line's (all secant
    slopes equal)."""
    return features is not None and float(np.ptp(features[len(FEATURE_POINTS):])) > 1e-7


@lru_cache(maxsize=1 << 14)
def features_of(tokens: tuple[str, ...]) -> np.ndarray | None:
    """``shape_features`` of a valid token string (read-only); cached per process."""
    features = shape_features(Expression(tokens_to_node(tokens)))
    if features is not None:
        features.flags.writeable = False
    return features


@lru_cache(maxsize=4)
def enumerated_pool(space: Space) -> tuple[list[tuple[str, ...]], list[str], np.ndarray]:
    """The pool of an enumerable space: ``(token strings, fingerprints, features (m, 127))``, one per distinct function
    (``FunctionIndex.distinct``) that passes ``Expression.screen`` and has features, in enumeration order; built once
    per process."""
    index = FunctionIndex.of(space)
    tokens, fingerprints, features = [], [], []
    for fp, t in index.distinct().items():
        if not index.verdict(t, reject_linear=True).ok:
            continue
        f = features_of(t)
        if f is not None:
            tokens.append(t)
            fingerprints.append(fp)
            features.append(f)
    matrix = np.stack(features) if features else np.zeros((0, 2 * len(FEATURE_POINTS) - 1))
    matrix.flags.writeable = False
    return tokens, fingerprints, matrix


# ---------------------------------------------------------------- the model

def normal_scores(rewards: np.ndarray) -> np.ndarray:
    """Rewards -> standard normal quantiles of their mid-ranks ((rank - 1/2) / n); ties share one."""
    from scipy.stats import norm, rankdata

    return norm.ppf((rankdata(rewards) - 0.5) / len(rewards))


def fitted_rows(rewards: np.ndarray) -> np.ndarray:
    """Rows (in proposal order) the process is conditioned on: all up to ``FIT_LIMIT``, else the best half of
    ``FIT_LIMIT`` (ties: the earlier) and an even spread of the rest."""
    n = len(rewards)
    if n <= FIT_LIMIT:
        return np.arange(n)
    best = np.argsort(-rewards, kind="stable")[:FIT_LIMIT // 2]
    rest = np.setdiff1d(np.arange(n), best)
    spread = rest[np.linspace(0, len(rest) - 1, FIT_LIMIT - len(best)).round().astype(int)]
    return np.union1d(best, spread)


def kernel_with(theta: np.ndarray | None):
    """The covariance ``C * Matern(nu=2.5) + White`` (at its starting values, or at fitted ``theta``: log values)."""
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    # Features are unit vectors (distances 0 to 2) and the targets normal scores (variance ~1): bounds to match.
    kernel = ConstantKernel(1.0, (0.05, 20.0)) * Matern(0.5, (0.02, 5.0), nu=2.5) + WhiteKernel(0.05, (1e-4, 1.0))
    return kernel if theta is None else kernel.clone_with_theta(np.asarray(theta, dtype=np.float64))


def fit_hyperparameters(features: np.ndarray, rewards: np.ndarray, seed: int) -> np.ndarray:
    """The kernel's log hyperparameters by maximum marginal likelihood on an even spread of at most ``HYPER_FIT``
    rewards (L-BFGS from fixed starting values: deterministic)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor

    keep = np.linspace(0, len(rewards) - 1, min(len(rewards), HYPER_FIT)).round().astype(int)
    gp = GaussianProcessRegressor(kernel_with(None), alpha=1e-8, random_state=seed % 2**32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a hyperparameter at its bound is fine here
        gp.fit(features[keep], normal_scores(rewards)[keep])
    return gp.kernel_.theta


class Posterior:
    """A Gaussian process with log hyperparameters ``theta`` conditioned on ``(features, rewards)`` (the rows
    ``fitted_rows`` picks; targets: normal scores among all rewards), and the batch acquisition on it."""

    def __init__(self, features: np.ndarray, rewards: np.ndarray, theta: np.ndarray):
        from scipy.linalg import cho_solve, cholesky

        keep = fitted_rows(rewards)
        kernel = kernel_with(theta)
        # as GaussianProcessRegressor(kernel, alpha=1e-8, optimizer=None).fit computes it, less its likelihood
        self.x = features[keep]
        covariance = kernel(self.x)
        covariance[np.diag_indices_from(covariance)] += 1e-8
        self.cholesky = cholesky(covariance, lower=True, check_finite=False)
        self.weights = cho_solve((self.cholesky, True), normal_scores(rewards)[keep], check_finite=False)
        self.signal = kernel.k1  # C * Matern: the latent function's covariance
        self.noise = float(kernel.k2.noise_level)

    def select(self, candidates: np.ndarray, pending: np.ndarray, n: int, kappa: float,
               accept: Callable[[int], bool]) -> list[int]:
        """Rows of ``candidates`` (m, d) to propose, ``n`` at most, greedily by ``mean + kappa * sd``, conditioning
        on ``pending`` (p, d) and on every pick (see the module docstring). ``accept(row)`` may refuse a row (then it
        is skipped, and nothing is conditioned on it)."""
        from scipy.linalg import solve_triangular

        m = len(candidates)
        rows = np.concatenate([candidates, pending]) if len(pending) else candidates
        cross = self.signal(rows, self.x)
        mean = cross @ self.weights
        v = solve_triangular(self.cholesky, cross.T, lower=True)
        var = self.signal.diag(rows) - np.einsum("ij,ij->j", v, v)
        factors = np.zeros((len(rows), len(pending) + min(n, m)))

        def condition(q: int, j: int) -> None:
            cov = self.signal(rows, rows[q:q + 1])[:, 0] - v.T @ v[:, q] - factors[:, :j] @ factors[q, :j]
            factors[:, j] = cov / math.sqrt(max(cov[q], 0.0) + self.noise)
            var[:] -= factors[:, j] ** 2

        for j in range(len(pending)):
            condition(m + j, j)
        picks: list[int] = []
        score = mean[:m] + kappa * np.sqrt(np.maximum(var[:m], 0.0))
        out = np.zeros(m, dtype=bool)  # picked or refused
        while len(picks) < n and not out.all():
            q = int(np.argmax(np.where(out, -np.inf, score)))  # the first of equals
            out[q] = True
            if accept(q):
                picks.append(q)
                condition(q, len(pending) + len(picks) - 1)
                score = mean[:m] + kappa * np.sqrt(np.maximum(var[:m], 0.0))
        return picks


# ---------------------------------------------------------------- the proposer

class SurrogateProposer(Proposer):
    """Gaussian-process upper-confidence-bound search over a pool of functions (module docstring); never updates a
    policy (``version`` stays 0); ``finished`` once an enumerated pool is spent.

    proposed: fingerprints asked so far. rewards: ``(index, tokens, reward)`` per tell. pool (sampled spaces only):
    token strings, oldest first. hyper: ``(rewards, log hyperparameters)`` of the last hyperparameter fit.
    exhausted: an ask found no new function while none was in flight (a sampled space of few distinct functions).
    """

    kind = "surrogate"

    def __init__(self, space: Space, seed: int, initial: int = 16, kappa: float = 2.0, pool_size: int = 2000):
        super().__init__(space, seed)
        self.initial = initial
        self.kappa = kappa
        self.pool_size = pool_size
        self.index = FunctionIndex.of(space)
        self.enumerated = self.index.enumerable
        self.rng = random.Random(self.seed)
        self.proposed: set[str] = set()
        self.rewards: list[tuple[int, tuple[str, ...], float]] = []
        self.pool: list[tuple[str, ...]] = []
        self.hyper: tuple[int, list[float]] | None = None
        self.exhausted = False
        self._posterior: tuple[int, Posterior] | None = None  # (rewards it was fitted to, model): a cache

    @property
    def finished(self) -> bool:
        # every proposal of an enumerated space is a member of its pool
        if self.enumerated and len(self.proposed) >= len(enumerated_pool(self.space)[1]):
            return True
        return self.exhausted

    # -- ask

    def _propose(self, n: int) -> list[Proposal]:
        if self.exhausted:  # finished stays finished (a later lucky draw would make a resumed run differ)
            return []
        out: list[tuple[str, ...]] = []
        while len(out) < n and (len(self.proposed) < self.initial or not self._informed()):
            tokens = self._random_member()
            if tokens is None:
                break
            out.append(tokens)
        if len(out) < n:
            out += self._acquire(n - len(out))
        while len(out) < n:  # a sampled pool ran short (its members were all proposed by other token strings)
            tokens = self._random_member()
            if tokens is None:
                break
            out.append(tokens)
        if n and not out and not self._outstanding:  # nothing new, and no reward to come could change that
            self.exhausted = True
        return [Proposal(self._new_index(), tokens, fingerprint=self.index.fingerprint(tokens)) for tokens in out]

    def _informed(self) -> bool:
        """Whether the rewards so far can guide a model: at least two different values (all equal say nothing)."""
        return len({r for _, _, r in self.rewards}) >= 2

    def _random_member(self) -> tuple[str, ...] | None:
        """A uniformly random function not proposed yet; None when an enumerated pool is spent, or when a sampled
        space yields no new function in ``RANDOM_TRIES`` draws (a space of almost only degenerate functions)."""
        if self.enumerated:
            tokens, fingerprints, _ = enumerated_pool(self.space)
            free = [i for i, fp in enumerate(fingerprints) if fp not in self.proposed]
            if not free:
                return None
            i = free[self.rng.randrange(len(free))]
            chosen, fp = tokens[i], fingerprints[i]
        else:
            for tries in range(2 * RANDOM_TRIES):
                chosen = sample_tokens(self.space, self.rng)
                features = features_of(chosen)
                # the first RANDOM_TRIES draws must be able to join the pool, later ones need only features
                if features is not None and (usable(features) or tries >= RANDOM_TRIES):
                    fp = self.index.fingerprint(chosen)
                    if fp not in self.proposed:
                        break
            else:
                return None
        self.proposed.add(fp)
        return chosen

    def _acquire(self, n: int) -> list[tuple[str, ...]]:
        """Up to ``n`` pool members by the batch acquisition."""
        if self.enumerated:
            tokens, fingerprints, features = enumerated_pool(self.space)
            free = [i for i, fp in enumerate(fingerprints) if fp not in self.proposed]
            tokens, features = [tokens[i] for i in free], features[free]
        else:
            self._refresh()
            if not self.pool:
                return []
            tokens = list(self.pool)
            features = np.stack([features_of(t) for t in tokens])
        if not tokens:
            return []
        pending = [features_of(t) for _, t in sorted(self._outstanding.items())]
        pending = np.stack(pending) if pending else np.zeros((0, features.shape[1]))
        refused: set[int] = set()

        def accept(row: int) -> bool:
            # a sampled pool holds functions by their features; another token string of a function already proposed
            # is refused here (and leaves the pool)
            fp = self.index.fingerprint(tokens[row])
            if fp in self.proposed:
                refused.add(row)
                return False
            self.proposed.add(fp)
            return True

        # small matrices: one BLAS thread is faster (threads only spin against each other) and gives the same
        # rounding on every machine
        with threadpool_limits(1):
            picks = self._model().select(features, pending, n, self.kappa, accept)
        if not self.enumerated:
            gone = refused | set(picks)
            self.pool = [t for i, t in enumerate(self.pool) if i not in gone]
        return [tokens[i] for i in picks]

    def _model(self) -> Posterior:
        n = len(self.rewards)
        if self._posterior is None or self._posterior[0] != n:
            ordered = sorted(self.rewards)  # proposal order: the fit does not depend on the order of the tells
            features = np.stack([features_of(t) for _, t, _ in ordered])
            rewards = np.array([r for _, _, r in ordered])
            if self.hyper is None or n <= HYPER_FIT or n >= self.hyper[0] + HYPER_EVERY:
                self.hyper = (n, [float(v) for v in fit_hyperparameters(features, rewards, self.seed)])
            self._posterior = (n, Posterior(features, rewards, np.array(self.hyper[1])))
        return self._posterior[1]

    def _refresh(self) -> None:
        """Add ``REFRESH`` new functions to a sampled pool (module docstring); keep the ``pool_size`` latest."""
        parents = [t for _, t, _ in heapq.nsmallest(PARENTS, self.rewards, key=lambda e: (-e[2], e[0]))]
        known = {features_of(t).tobytes() for t in self.pool}
        added = 0
        for _ in range(4 * REFRESH):  # bounded: in a space of mostly degenerate functions the pool just grows less
            if added == REFRESH:
                break
            if parents and self.rng.random() < 0.5:
                tokens = mutate(self.space, parents[self.rng.randrange(len(parents))], self.rng)
            else:
                tokens = sample_tokens(self.space, self.rng)
            features = features_of(tokens)
            if not usable(features) or features.tobytes() in known:
                continue
            known.add(features.tobytes())
            self.pool.append(tokens)
            added += 1
        del self.pool[:max(0, len(self.pool) - self.pool_size)]

    # -- tell

    def _learn(self, proposal: Proposal, reward: float) -> None:
        self.rewards.append((proposal.index, tuple(proposal.tokens), reward))
        return None

    # -- state

    def _state(self) -> dict:
        return {"rng": rng_state(self.rng), "proposed": sorted(self.proposed),
                "rewards": [[i, list(t), r] for i, t, r in self.rewards],
                "pool": [list(t) for t in self.pool], "exhausted": self.exhausted,
                "hyper": None if self.hyper is None else [self.hyper[0], list(self.hyper[1])]}

    def _load(self, state: dict) -> None:
        set_rng_state(self.rng, state["rng"])
        self.proposed = set(state["proposed"])
        self.rewards = [(int(i), tuple(t), float(r)) for i, t, r in state["rewards"]]
        self.pool = [tuple(t) for t in state["pool"]]
        self.exhausted = bool(state.get("exhausted", False))  # checkpoints before these keys: not, none yet
        hyper = state.get("hyper")
        self.hyper = None if hyper is None else (int(hyper[0]), [float(v) for v in hyper[1]])
        self._posterior = None
