"""The RNN controller: an LSTM that writes a token string one position at a time, and the proposer built on it.

At position ``p`` the LSTM's output goes through a head of its own whose outputs are exactly the legal tokens of
``p`` (``space.choices[p]``: a unit's inputs grow with its index), so the softmax never puts mass on an illegal token.
The token sampled at ``p`` is embedded (an embedding table per position: the same name means different things at
different positions) and fed back as the input of ``p + 1``; the first input is a learned vector.

Logits are divided by the temperature, then squashed to ``cap * tanh(logits / cap)``: the sampling distribution and
the distribution the learner trains are the same. The heads start at zero, so an untrained policy is uniform over the
legal tokens of every position: the controller starts as random search and must learn to do better.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn

from controller.base import Proposal, Proposer
from controller.learner import Learner
from search.language.space import Space

if TYPE_CHECKING:  # an annotation only: controller.settings imports the proposers
    from controller.settings import ControllerSettings


class Policy(nn.Module):
    """LSTM policy over the token positions of ``space``.

    sample(n, generator) -> (indices (n, L) long, logp (n,) float): n token strings at once, each position's token
    index into ``space.choices[p]``, and their log-probabilities. evaluate(indices) -> (logp (B,), entropy (B,)), with
    gradients: log-probability of given token strings and the entropy of the policy along them (summed over positions).
    """

    def __init__(self, space: Space, hidden_size: int = 64, embedding_size: int = 32, num_layers: int = 1,
                 temperature: float = 1.0, tanh_cap: float = 2.5):
        super().__init__()
        self.sizes = [len(c) for c in space.choices]
        self.temperature = float(temperature)
        self.tanh_cap = float(tanh_cap)
        self.go = nn.Parameter(torch.zeros(embedding_size))
        self.embeddings = nn.ModuleList(nn.Embedding(k, embedding_size) for k in self.sizes[:-1])
        self.lstm = nn.LSTM(embedding_size, hidden_size, num_layers)
        self.heads = nn.ModuleList(nn.Linear(hidden_size, k) for k in self.sizes)
        for head in self.heads:  # uniform start: the untrained controller is random search
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def _logits(self, hidden: torch.Tensor, position: int) -> torch.Tensor:
        logits = self.heads[position](hidden) / self.temperature
        if self.tanh_cap > 0:
            logits = self.tanh_cap * torch.tanh(logits / self.tanh_cap)
        return logits

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        indices = torch.zeros(n, len(self.sizes), dtype=torch.long)
        logp = torch.zeros(n)
        inp = self.go.expand(n, -1)
        state = None
        for p, k in enumerate(self.sizes):
            out, state = self.lstm(inp[None], state)
            if k > 1:  # a single legal token (unit 0's inputs) costs nothing and has probability 1
                log_probs = torch.log_softmax(self._logits(out[0], p), dim=-1)
                chosen = torch.multinomial(log_probs.exp(), 1, generator=generator)[:, 0]
                indices[:, p] = chosen
                logp += log_probs.gather(1, chosen[:, None])[:, 0]
            if p + 1 < len(self.sizes):
                inp = self.embeddings[p](indices[:, p])
        return indices, logp

    def evaluate(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = indices.shape[0]
        inputs = [self.go.expand(batch, -1)] + [self.embeddings[p](indices[:, p]) for p in range(len(self.sizes) - 1)]
        out, _ = self.lstm(torch.stack(inputs))
        logp = torch.zeros(batch)
        entropy = torch.zeros(batch)
        for p, k in enumerate(self.sizes):
            if k == 1:
                continue
            log_probs = torch.log_softmax(self._logits(out[p], p), dim=-1)
            logp = logp + log_probs.gather(1, indices[:, p:p + 1])[:, 0]
            entropy = entropy - (log_probs.exp() * log_probs).sum(-1)
        return logp, entropy


class PolicyProposer(Proposer):
    """Proposals sampled from the RNN ``Policy``, trained by ``Learner`` (PPO, or REINFORCE with ``reinforce=True``).

    Every ``settings.batch_size`` rewards the learner updates the policy (the tell that completes a batch returns the
    update record). Each proposal carries the log-probability its tokens had when sampled and the policy version, so
    rewards that arrive after the policy moved on are still used, with importance weights (see ``Learner``).
    """

    def __init__(self, space: Space, seed: int, settings: ControllerSettings, reinforce: bool = False):
        super().__init__(space, seed)
        self.kind = "reinforce" if reinforce else "ppo"
        with torch.random.fork_rng(devices=[]):  # initial weights from the seed, without touching the global RNG
            torch.manual_seed(self.seed)
            self.policy = Policy(space, settings.hidden_size, settings.embedding_size, settings.num_layers,
                                 settings.temperature, settings.tanh_cap)
        self.learner = Learner(self.policy, settings, reinforce=reinforce)
        self.generator = torch.Generator().manual_seed(self.seed)

    @property
    def version(self) -> int:
        return self.learner.version

    def _propose(self, n: int) -> list[Proposal]:
        indices, logp = self.policy.sample(n, self.generator)
        choices = self.space.choices
        out = []
        for row, lp in zip(indices.tolist(), logp.tolist()):
            tokens = tuple(choices[p][i] for p, i in enumerate(row))
            out.append(Proposal(self._new_index(), tokens, lp, self.learner.version))
        return out

    def _learn(self, proposal: Proposal, reward: float) -> dict | None:
        if proposal.logp is None:
            raise ValueError(f"proposal {proposal.index} has no behaviour log-probability; the learner needs it")
        return self.learner.add(proposal.index, self.space.indices_from_tokens(proposal.tokens), proposal.logp,
                                proposal.policy_version, reward)

    def _state(self) -> dict:
        return {"policy": copy.deepcopy(self.policy.state_dict()), "learner": self.learner.state_dict(),
                "generator": self.generator.get_state().clone()}

    def _load(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.learner.load_state_dict(state["learner"])
        self.generator.set_state(state["generator"])
