"""A user-defined child for actsearch: a small GPT-style character-level language model whose MLP activation is the
candidate, trained on a corpus every Python has offline: the standard library's own source files.

actsearch calls ``train(activation, seed, device, options)`` once per child (``child.task:
"examples/char_lm.py:train"`` in configs/transformer.yaml); it returns the metrics, and ``rewards.metric: val_bpc``
with ``rewards.minimize: true`` makes held-out bits per character the reward, lower being better. ``val_bpc`` is
scored on ``options["split"]``: the validation split during the search, the test split in ``actsearch significance``.

The corpus: the first 1.2M characters of the standard library's top-level ``*.py`` files in name order (80% train,
10% val, 10% test, contiguous), so it depends on the Python version (the figures in the README: CPython 3.11.7).

    activation  actsearch's Activation: activation(channels) -> a fresh nn.Module (per-channel betas), one per site
    seed        initial weights and batch order (the same seed pairs candidates in significance tests)
    device      a torch.device
    options     child.options from the config, plus "split": "val" (the search) or "test" (significance), and
                with early stopping on (``fidelity:``), "report": report(step, value) -> go on? The child reports
                its held-out bits per character whenever ``report.due(step)`` says a rung is reached, and stops
                training when the answer is no.

Run one child by hand: ``python examples/char_lm.py gelu`` (or any expression, e.g. "x * sigmoid(beta * x)").
"""
from __future__ import annotations

import math
import sys
import sysconfig
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

DEFAULTS = {
    "steps": 400,  # AdamW steps
    "batch_size": 32,  # sequences per step
    "context": 64,  # characters per sequence
    "d_model": 64,  # embedding width
    "layers": 2,  # transformer blocks
    "heads": 4,  # attention heads
    "mlp_ratio": 4,  # MLP hidden width = mlp_ratio * d_model: the activation's channels
    "lr": 3e-3,  # peak learning rate (linear warm-up, cosine decay)
    "warmup_steps": 40,
    "weight_decay": 0.1,
    "corpus_chars": 1_200_000,  # characters read from the standard library (train: 80%, val: 10%, test: 10%)
    "eval_chars": 32_768,  # characters scored on the held-out split (in windows of `context`)
}
VOCAB = 128  # ASCII; other characters map to 0


# ---------------------------------------------------------------- the corpus

_CORPUS: dict[int, torch.Tensor] = {}


def corpus(chars: int) -> torch.Tensor:
    """The first ``chars`` ASCII characters of the standard library's top-level .py files, in name order, as codes
    (uint8). Deterministic for a given Python version; cached per process."""
    if chars not in _CORPUS:
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        parts, total = [], 0
        for path in sorted(stdlib.glob("*.py")):
            text = path.read_bytes()
            parts.append(text)
            total += len(text)
            if total >= chars:
                break
        data = torch.frombuffer(bytearray(b"".join(parts)[:chars]), dtype=torch.uint8).clone()
        data[data >= VOCAB] = 0
        _CORPUS[chars] = data
    return _CORPUS[chars]


def splits(chars: int) -> dict[str, torch.Tensor]:
    data = corpus(chars).long()
    a, b = int(len(data) * 0.8), int(len(data) * 0.9)
    return {"train": data[:a], "val": data[a:b], "test": data[b:]}


# ---------------------------------------------------------------- the model

class Block(nn.Module):
    def __init__(self, d: int, heads: int, hidden: int, activation):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.act, self.fc2 = nn.Linear(d, hidden), activation(hidden), nn.Linear(hidden, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        h = self.fc1(self.ln2(x))
        # The activation modules work per channel on dim 1 (N, C, ...): put the hidden channels there.
        h = self.act(h.transpose(1, 2)).transpose(1, 2)
        return x + self.fc2(h)


class CharGPT(nn.Module):
    def __init__(self, activation, d: int, layers: int, heads: int, hidden: int, context: int):
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, d), nn.Embedding(context, d)
        self.blocks = nn.ModuleList(Block(d, heads, hidden, activation) for _ in range(layers))
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, VOCAB)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


# ---------------------------------------------------------------- training

@torch.no_grad()
def bits_per_char(model: nn.Module, data: torch.Tensor, context: int, chars: int, device) -> float:
    """Mean cross-entropy in bits of each next character over the first ``chars`` characters of ``data``."""
    model.eval()
    n = min(chars, len(data) - 1) // context
    x = data[:n * context].view(n, context)
    y = data[1:n * context + 1].view(n, context)
    total = 0.0
    for i in range(0, n, 256):
        logits = model(x[i:i + 256].to(device)).float()
        total += F.cross_entropy(logits.reshape(-1, VOCAB), y[i:i + 256].reshape(-1).to(device),
                                 reduction="sum").item()
    model.train()
    return total / (n * context) / math.log(2)


def train(activation, seed: int, device, options: dict) -> dict:
    """One child: train the model with ``activation`` in its MLPs from ``seed``; return its metrics."""
    o = {**DEFAULTS, **{k: v for k, v in options.items() if k != "split"}}
    split = options.get("split", "val")
    report = options.get("report")  # early stopping (fidelity:): absent when it is off
    data = splits(o["corpus_chars"])
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = CharGPT(activation, o["d_model"], o["layers"], o["heads"], o["mlp_ratio"] * o["d_model"],
                    o["context"]).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "act" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "act" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": o["weight_decay"]},
                             {"params": rest, "weight_decay": 0.0}], lr=o["lr"], betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(seed)
    train_data, ctx = data["train"], o["context"]
    loss_sum = 0.0
    for step in range(o["steps"]):
        warm = (step + 1) / o["warmup_steps"]
        decay_to = 0.5 * (1 + math.cos(math.pi * step / o["steps"]))
        for g in opt.param_groups:
            g["lr"] = o["lr"] * min(warm, decay_to)
        starts = torch.randint(0, len(train_data) - ctx - 1, (o["batch_size"],), generator=gen)
        offsets = starts[:, None] + torch.arange(ctx + 1)
        chunk = train_data[offsets]
        x, y = chunk[:, :-1].to(device), chunk[:, 1:].to(device)
        loss = F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))
        if not torch.isfinite(loss):
            return {"val_bpc": float("nan"), "steps": step}  # actsearch records a non-finite metric as diverged
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step >= o["steps"] - 20:
            loss_sum += loss.item()
        if report is not None and report.due(step + 1) and step + 1 < o["steps"]:
            if not report(step + 1, bits_per_char(model, data[split], ctx, o["eval_chars"], device)):
                return {"steps": step + 1}  # stopped at a rung: actsearch records the value it reported
    train_s = time.perf_counter() - start
    bpc = bits_per_char(model, data[split], ctx, o["eval_chars"], device)
    return {"val_bpc": bpc, "train_loss": loss_sum / min(20, o["steps"]), "train_s": train_s, "steps": o["steps"],
            "split_is_test": float(split == "test")}


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from evaluator.user import make_activation

    torch.set_num_threads(1)
    for name in sys.argv[1:] or ["gelu"]:
        t = time.perf_counter()
        out = train(make_activation(name), 0, torch.device("cpu"), {})
        print(f"{name}: {out}  ({time.perf_counter() - t:.1f} s)")
