"""Activation functions for children: hand-designed baselines by name, and searched candidates by expression text.

A child network takes an *activation factory*: a callable ``factory(channels) -> nn.Module`` that it calls once per
activation site, so every site gets its own module (a candidate's betas, PReLU's slopes are per site and per channel).
"""
from __future__ import annotations

import functools
from typing import Callable, Iterable, Sequence

from torch import nn

from search.language.expression import Expression, ExpressionError
from search.language.kernel import activation_module, resolve_kernel
from search.language.simplify import agree_widely, fingerprint_of, readable_text, simplest_text

ActivationFactory = Callable[[int], nn.Module]
DEFAULT_BASELINES = ("relu", "swish", "gelu")  # what a candidate is compared with when nobody names baselines

SWISH = "x * sigmoid(beta * x)"  # Swish with a trainable per-channel beta (initialised to 1), as the paper trains it

# The hand-designed baselines of the paper's comparison, by name. Each builds a fresh module for a site of C channels.
BASELINES: dict[str, Callable[[int, bool | None, str | None], nn.Module]] = {
    "relu": lambda c, compile, kernel=None: nn.ReLU(),
    "leaky_relu": lambda c, compile, kernel=None: nn.LeakyReLU(0.01),
    "prelu": lambda c, compile, kernel=None: nn.PReLU(c),  # one slope per channel, initialised to 0.25
    "elu": lambda c, compile, kernel=None: nn.ELU(),
    "selu": lambda c, compile, kernel=None: nn.SELU(),
    "softplus": lambda c, compile, kernel=None: nn.Softplus(),
    "gelu": lambda c, compile, kernel=None: nn.GELU(),
    "silu": lambda c, compile, kernel=None: nn.SiLU(),  # Swish-1: x * sigmoid(x), torch's native kernel
    "swish": lambda c, compile, kernel=None: activation_module(Expression.parse(SWISH), c, compile, kernel),
    "tanh": lambda c, compile, kernel=None: nn.Tanh(),
    "sigmoid": lambda c, compile, kernel=None: nn.Sigmoid(),
}

# The baselines the expression language writes exactly (tests/test_simplify.py checks each against its module on the
# fingerprint's probe points): a candidate whose fingerprint is one of these is marked "= name" in tables. ELU needs a
# constant 1, which exp(x - x) is. The rest cannot be written: gelu (x * Phi(x) needs the constants 1/2 and 1/sqrt(2)),
# selu (its scales 1.0507 and 1.6733), leaky_relu (a fixed slope of 0.01) and prelu (a trained slope that starts at
# 0.25, where every beta starts at 1).
BASELINE_TEXTS: dict[str, str] = {
    "relu": "relu(x)",
    "silu": "x * sigmoid(x)",
    "swish": SWISH,
    "softplus": "softplus(x)",
    "elu": "max(x, exp(min0(x)) - exp(x - x))",
    "tanh": "tanh(x)",
    "sigmoid": "sigmoid(x)",
}


@functools.lru_cache(maxsize=1)
def _baseline_fingerprints() -> dict[str, str]:
    return {fingerprint_of(text): name for name, text in BASELINE_TEXTS.items()}


def baseline_equal(expr: Expression) -> str | None:
    """The name of the baseline ``expr`` computes (its fingerprint is that of a ``BASELINE_TEXTS`` entry and the two
    agree on [-50, 50], ``simplify.agree_widely``), or None: ``max(relu(x), x)`` -> ``"relu"``, ``max(sqrt(x),
    softplus(x))`` -> None (softplus on [-5, 5] only). Fingerprints are cached per process."""
    name = _baseline_fingerprints().get(fingerprint_of(expr.text))
    return name if name is not None and agree_widely(expr.text, BASELINE_TEXTS[name]) else None


def same_function(a: str, b: str) -> bool:
    """Whether two activations (baseline names or expression texts, as ``activation_label`` gives them) compute one
    function: ``relu`` and ``max(x, 0)``, ``silu`` and ``x * sigmoid(x)``, two texts that agree on the fingerprint's
    probe points and on [-50, 50]. A baseline the language cannot write (gelu) is only itself."""
    if a == b:
        return True
    text_a, text_b = (BASELINE_TEXTS.get(t, None if t in BASELINES else t) for t in (a, b))
    if text_a is None or text_b is None:
        return False
    return fingerprint_of(text_a) == fingerprint_of(text_b) and agree_widely(text_a, text_b)


def repeated_baseline(names: Sequence[str]) -> str | None:
    """What is wrong when two of the baseline ``names`` (valid baseline names or expression texts) are one function
    written twice (``same_function``), in the user's words; None when none is: a baseline listed twice would be
    trained twice and counted as two comparisons in Holm's correction. The same text twice is one baseline."""
    given: dict[str, str] = {}
    for name in names:
        given.setdefault(activation_label(name), name)
    labels = list(given)
    for i, later in enumerate(labels):
        for earlier in labels[:i]:
            if same_function(earlier, later):
                return f"{given[later]!r} is {given[earlier]!r} again (the same function); name it once"
    return None


@functools.lru_cache(maxsize=1024)
def _resolve(activation: str) -> str | Expression:
    """A baseline's name, or the parsed candidate; raises ``UserError`` for anything else. Cached: a child labels its
    activation and builds it from the same text, and a worker trains many children."""
    from search.language.errors import UserError

    if not isinstance(activation, str):
        raise UserError(f"activation must be text (a baseline name or an expression), got {activation!r}")
    name = activation.strip()
    if name.lower() in BASELINES:
        return name.lower()
    try:
        return Expression.parse(name)
    except ExpressionError as exc:
        raise UserError(f"unknown activation {activation!r}: not a baseline ({', '.join(BASELINES)}) "
                        f"and not an expression ({exc})") from None


def activation_label(activation: str) -> str:
    """The name a result records: the baseline's name, or the candidate's canonical expression text."""
    resolved = _resolve(activation)
    return resolved if isinstance(resolved, str) else resolved.text


def activation_kernel(activation: str, device, compile: bool | None = None, kernel: str | None = None) -> str:
    """The kernel ``activation`` runs with on ``device`` (what a result records): eager | compiled | native for a
    candidate (and Swish), ``torch`` for a baseline torch implements."""
    resolved = _resolve(activation)
    if isinstance(resolved, str) and resolved != "swish":
        return "torch"
    return resolve_kernel(kernel, device, compile)


def activation_factory(activation: str, compile: bool | None = None, kernel: str | None = None) -> ActivationFactory:
    """``factory(channels) -> nn.Module`` for a baseline name (``relu``, ``swish``, ...) or an expression text.

    compile: passed to ``search.language.kernel.activation_module`` for candidates (and Swish): ``True`` fuses the function with
    ``torch.compile``, ``False`` runs eager ops, ``None`` fuses on CUDA only and runs the native kernel on CPU.
    kernel: eager | compiled | native | auto (None), overriding ``compile`` when given. Native baselines ignore both.
    Raises ``search.language.errors.UserError`` when ``activation`` is neither a baseline nor a valid expression.
    """
    resolved = _resolve(activation)
    if isinstance(resolved, str):
        build = BASELINES[resolved]
        return lambda channels: build(channels, compile, kernel)
    return lambda channels: activation_module(resolved, channels=channels, compile=compile, kernel=kernel)


# ---------------------------------------------------------------- how a candidate's function is shown

def display_parts(text: str, known: Iterable[str] = ()) -> tuple[str, str | None]:
    """``(simplest, equals)`` for a candidate's text: its simplest equivalent (``search.language.simplify``, with
    ``known``: other texts of the same function) written readably (``readable_text``: ``x * sigmoid(beta * x)``, not
    ``sigmul(beta * x, x)``) and the name of the baseline it computes, or None. A baseline's name (``relu``) and text
    that does not parse come back as they are."""
    if not isinstance(text, str) or text.strip().lower() in BASELINES:
        return text, None
    try:
        expr = Expression.parse(text)
    except ExpressionError:
        return text, None
    equals = baseline_equal(expr)
    simplest = simplest_text(expr, [*known, *([BASELINE_TEXTS[equals]] if equals else [])])
    return readable_text(simplest), equals


def display_text(text: str, known: Iterable[str] = ()) -> str:
    """A candidate as every display shows it: ``max(relu(x), x)`` -> ``relu(x)  = relu``, ``x - relu(x)`` ->
    ``min0(x)``; see ``display_parts``. Records, JSON and CSV keep the canonical text (commands accept either)."""
    return joined(*display_parts(text, known))


def joined(simplest: str, equals: str | None) -> str:
    """``display_parts``' two parts as one text: ``relu(x)  = relu``."""
    return f"{simplest}  = {equals}" if equals else simplest
